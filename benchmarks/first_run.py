"""The README's first command against a baseline, side by side in one run on one machine.

    python benchmarks/first_run.py                           # recipes/brick.yaml, seed 0, as the README runs it
    python benchmarks/first_run.py --seeds 0 1 2 --keep out/first_run   # the recorded figures: means of 3 seeds
    python benchmarks/first_run.py --candidate "--steps 200"  # try a setting against the same baseline

Each side runs ``texsynth recipe RECIPE -o OUT --quiet --seed N`` in a fresh
process, as a new user would type it, timed from launch to exit (Python
start-up, torch import, loading VGG19 and the style targets included). The
baseline gets ``--baseline`` options, by default ``--scales 1``: the single
full-size scale every texture up to 256 px got before textures went
coarse-to-fine (2026-12-01), which reproduces that path exactly. The
candidate gets ``--candidate`` options (default: none, the recipe as shipped).
``--baseline-checkout DIR`` runs the baseline with another checkout's texsynth
(a ``git worktree`` of an older commit, put first on ``PYTHONPATH``), to
measure a change of the code rather than of the options.

Both outputs are judged by one yardstick, ``texsynth.metrics.Measure`` on the
recipe's style at the output's size: style distance, sliced distance and worst
window (lower is closer). Each side runs once per ``--seeds`` seed, seed by
seed and the two sides in turn, so a slow spell of the machine falls on both,
and the table shows the means with the ratio baseline / candidate (above 1:
the candidate is faster or closer). The worst window is one 128 px window of
nine and moved by up to 20% between runs that differed only in how their
steps were split, so judge it over several seeds. The runs go one after the
other, never side by side: on two cores two runs halve each other.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import texsynth
from speed import Yardstick, device_name, load_rgb, long_side_size, upright_size  # benchmarks/speed.py

ROOT = Path(__file__).resolve().parents[1]


def run_command(recipe: Path, output: Path, options: list[str], threads: int, checkout: Path = ROOT) -> float:
    """Seconds from launch to exit of ``texsynth recipe`` with ``options``, run from ``checkout``'s code."""
    command = [sys.executable, "-m", "texsynth", "recipe", str(recipe), "-o", str(output), "--quiet", *options]
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if checkout != ROOT:
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(checkout), environment.get("PYTHONPATH")]))
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=checkout)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"{shlex.join(command)} failed with exit code {done.returncode}")
    return seconds


#: The yardstick's figures by the names this benchmark prints.
FIGURES = {"style": "style distance", "sliced": "sliced distance", "window": "worst window"}


def judge(image: Path, recipe: texsynth.Recipe) -> dict[str, float]:
    """The yardstick's three figures for an output of ``recipe`` (its styles' blend, at the output's size)."""
    output = load_rgb(image, upright_size(image))
    long_side = max(output.shape[-2:])
    sizes = [long_side_size(style.image, round(long_side * style.scale)) for style in recipe.styles]
    styles = [load_rgb(style.image, size) for style, size in zip(recipe.styles, sizes)]
    figures = Yardstick(styles, [style.weight for style in recipe.styles])(output)
    return {FIGURES[name]: value for name, value in figures.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "brick.yaml")
    parser.add_argument("--baseline", default="--scales 1", help="the baseline's options (one string)")
    parser.add_argument("--candidate", default="", help="the candidate's options (one string)")
    parser.add_argument("--baseline-checkout", type=Path, default=ROOT, help="run the baseline from this checkout")
    parser.add_argument("--steps", type=int, help="steps for both sides (default: the recipe's)")
    parser.add_argument("--seeds", type=int, nargs="+", help="run each side once per seed (default: the recipe's)")
    parser.add_argument("--keep", type=Path, help="a folder to keep the outputs in, to look at")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    recipe = texsynth.load_recipe(args.recipe)
    steps = ["--steps", str(args.steps)] if args.steps else []
    sides = {"baseline": shlex.split(args.baseline) + steps, "candidate": shlex.split(args.candidate) + steps}
    checkouts = {"baseline": args.baseline_checkout.resolve(), "candidate": ROOT}
    seeds = args.seeds or [recipe.seed]
    stamp = datetime.datetime.now().astimezone().isoformat(timespec="minutes")
    print(
        f"texsynth {texsynth.__version__}, {args.recipe.name}, on {device_name(torch.device('cpu'))} [cpu], "
        f"{args.threads} threads, "
        f"torch {torch.__version__}, {stamp}; seeds {', '.join(map(str, seeds))}"
    )
    runs: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        # Seed by seed, each side in turn, so a slower spell of the machine falls on both.
        for seed in seeds:
            for side, options in sides.items():
                output = folder / f"{side}-seed{seed}.png"
                seconds = run_command(
                    args.recipe.resolve(), output, [*options, "--seed", str(seed)], args.threads, checkouts[side]
                )
                runs[side].append({"seconds": seconds, **judge(output, recipe)})
                judged = runs[side][-1]
                figures = ", ".join(f"{name} {value:.4f}" for name, value in judged.items() if name != "seconds")
                label = shlex.join(options) or "as shipped"
                if checkouts[side] != ROOT:
                    label += f", code from {checkouts[side]}"
                print(f"  {side} ({label}), seed {seed}: {seconds:.1f} s; {figures}", flush=True)
    means = {side: {name: statistics.mean(run[name] for run in done) for name in done[0]} 
             for side, done in runs.items()}
    print(f"\n  {'mean over ' + str(len(seeds)) + ' seed(s)':24}{'baseline':>10}{'candidate':>11}{'ratio':>8}")
    for name, form in [("seconds", "{:.1f}"), ("style distance", "{:.4f}"), ("sliced distance", "{:.4f}"),
                       ("worst window", "{:.4f}")]:
        before, after = means["baseline"][name], means["candidate"][name]
        print(f"  {name:24}{form.format(before):>10}{form.format(after):>11}{before / max(after, 1e-12):>7.2f}x")
    print("  (ratio: baseline / candidate; above 1 means the candidate is faster or closer to the style)")


if __name__ == "__main__":
    main()
