"""texsynth against the textbook implementation, side by side, in one run on one machine.

    python benchmarks/speed.py --device cuda            # the full benchmark on a GPU
    python benchmarks/speed.py --device cpu             # the full benchmark on the CPU
    python benchmarks/speed.py --device cpu --sizes 128 --texture-size 128 --evals 60   # a smoke run

The textbook side (``benchmarks/textbook.py``) is written as the PyTorch
tutorial "Neural Transfer Using PyTorch" does it: a normalization module and
VGG19's layers copied into an ``nn.Sequential`` with transparent
``ContentLoss``/``StyleLoss`` layers spliced in that stash ``self.loss``;
Gram = F·Fᵀ / (a·b·c·d); style weight 1e6, content weight 1; fp32, batch 1,
full resolution; ``torch.optim.LBFGS`` with its defaults and a closure that
clamps the image and counts evaluations. It uses texsynth's VGG19 weights
(with their Caffe normalization), so only the implementation differs, and by
default texsynth's loss layers (style relu1_1 … relu5_1, content relu4_2: "the
Gram + content objective through relu5_1"). ``--layers tutorial`` uses the
tutorial's own, conv_1 … conv_5 and conv_4 (conv1_1, conv1_2, conv2_1,
conv2_2, conv3_1 and conv2_2), on both sides.

texsynth runs the same recipe and size through its public API
(``texsynth.parse_recipe`` and ``texsynth.synthesize``), with its defaults.

What it prints:

(a) Milliseconds per loss + gradient evaluation of the Gram + content objective
    at each ``--sizes`` (style Starry Night, content Chelsea): the median over
    ``--repeats`` evaluations after ``--warmup``, timed between consecutive
    evaluations of a real optimizer run, so each side's optimizer step is in its
    time ("step"); for the textbook also the closure alone ("eval": forward,
    backward and clamp). CUDA times come from CUDA events, CPU times from
    ``time.perf_counter``.
(b) Time to equal quality on a texture (style only): the textbook runs
    ``--evals`` evaluations (the tutorial's "300 iterations"); then texsynth runs
    its own default texture recipe (its style loss, its coarse-to-fine pyramid)
    until its image is at least as close to the style by all three figures of
    one common yardstick, ``texsynth.metrics.Measure``: the style distance on
    the same Gram targets, the sliced distance and the worst window, checked
    every ``--check-every`` steps at the full size (checking time is left out
    of texsynth's time; ``--texsynth-style-loss gram`` gives it the textbook's
    objective instead). Both times run from loading the images to reaching the
    loss, after an untimed warm-up run of 3 evaluations in the same process.
    The tutorial's loop would finish its last L-BFGS step (to evaluation 320);
    nothing measured depends on those, so the benchmark stops at ``--evals``.
(c) Peak memory of each side. Every measurement runs in its own subprocess
    and opens a memory window after its setup (for (b): after building the
    yardstick, before the warm-up run):
    on CUDA ``torch.cuda.max_memory_allocated`` after
    ``reset_peak_memory_stats``; on the CPU (Linux) the process's peak resident
    set size (VmHWM, i.e. ``getrusage(RUSAGE_SELF).ru_maxrss``) after resetting
    it through /proc/self/clear_refs; without /proc, ru_maxrss since the
    process started. Each line shows the peak and the memory in use at the
    window's start (Python, torch, the decoded weights); the table compares
    the peaks above the start, what the work itself needed.

Both sides get the same image sizes, style and content images (resized the
way texsynth resizes them: long side = output's, Lanczos), the same device and
the same thread count. The transfer starts from the content image on both
sides. The texture starts from noise drawn from ``--seed``, each side its own
kind: the tutorial's white noise for the textbook, texsynth's faint noise for
texsynth (``--textbook-start texsynth`` gives the textbook texsynth's; it
stalls from there, see ``noise_start``). texsynth's peak memory in (b)
includes its yardstick checks.

How long it takes, on the 2-core AMD EPYC CPU this was developed on with one
thread (OMP_NUM_THREADS=1): (a) about 30 s at 256 px and 2 minutes at 512 px
(about 1.2 s and 3.8 s per evaluation); (b) at 256 px about 6.5 minutes for
the textbook's 300 evaluations and 1-3 minutes for texsynth; so the full CPU
run takes about 12 minutes on one thread, fewer on two. The smoke run above
takes about 1 minute. On a GPU the full run takes a minute or two. There are
no timed assertions: it only measures and prints.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image, ImageOps
from torch import Tensor
from torchvision.transforms.functional import pil_to_tensor

import texsynth
from texsynth.features import load_vgg19_weights
from texsynth.metrics import Measure
from textbook import LAYER_SETS, Enough, run_style_transfer, textbook_model  # benchmarks/textbook.py

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "recipes" / "images"

WARMUP_RUN = 3  # untimed evaluations before a timed texture run


# ---------------------------------------------------------------------------
# Shared inputs, clocks and memory.
# ---------------------------------------------------------------------------


def load_rgb(path: Path, size: tuple[int, int]) -> Tensor:
    """RGB in [0, 1], (1, 3, H, W), resized to ``size`` = (width, height) as texsynth resizes."""
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image).convert("RGB")
        if image.size != size:
            image = image.resize(size, Image.Resampling.LANCZOS)
        return pil_to_tensor(image).unsqueeze(0).float().div(255.0).contiguous()  # (1, 3, H, W)


def upright_size(path: Path) -> tuple[int, int]:
    """(width, height) after EXIF orientation, as texsynth reads it."""
    with Image.open(path) as image:
        return ImageOps.exif_transpose(image).size


def long_side_size(path: Path, long_side: int) -> tuple[int, int]:
    width, height = upright_size(path)
    scale = long_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def noise_start(kind: str, height: int, width: int, seed: int) -> Tensor:
    """The textbook's texture start from ``seed``: the tutorial's white noise or texsynth's.

    ``randn``: the tutorial's ``torch.randn(content_img.size())`` (clamped to
    [0, 1] by the first closure). ``texsynth``: texsynth's start (README: faint
    noise, ±0.1 around mid-grey). torch's L-BFGS stalls from the faint one
    (Starry Night, 128 px, 300 evaluations: yardstick 23.8 from it, 0.031 from
    white noise), so the default gives each side its own start.
    """
    generator = torch.Generator().manual_seed(seed)
    if kind == "randn":
        return torch.randn((1, 3, height, width), generator=generator)
    return 0.5 + 0.1 * (2 * torch.rand((1, 3, height, width), generator=generator) - 1)


def recipe(
    spec: dict, *, steps: int, transfer: bool, single_scale: bool = False, style_loss: str = "gram"
) -> texsynth.Recipe:
    """The texsynth recipe of a job: the texture, or the transfer with a content image.

    ``single_scale`` asks for ``scales: 1`` (no coarse-to-fine pyramid) where the
    recipe format has that field, so (a) times evaluations at the size it names.
    ``style_loss``: the textbook's objective (``gram``) or texsynth's default (``auto``).
    """
    style_layers, content_layers = LAYER_SETS[spec["layers"]]
    data = {
        "size": spec["size"],
        "steps": steps,
        "seed": spec["seed"],
        "styles": [{"image": spec["style"]}],
        "style_layers": {name: 1.0 for name in style_layers},
        # The textbook's objective by default: texsynth's texture default adds a sliced-Wasserstein term.
        "style_loss": style_loss,
    }
    if transfer:
        data["content"] = {"image": spec["content"], "layers": {name: 1.0 for name in content_layers}}
    if single_scale:
        try:
            return texsynth.parse_recipe({**data, "scales": 1})
        except texsynth.TexsynthError:  # a texsynth without pyramids: every step is at full size
            pass
    return texsynth.parse_recipe(data)


class Clock:
    """Timestamps: CUDA events on the stream (nothing waits until they are read) or the host clock."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def now(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def seconds(self, start, end) -> float:
        if self.cuda:
            end.synchronize()
            return start.elapsed_time(end) / 1000
        return end - start


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _proc_status_mb(field: str) -> float | None:
    """A memory line of /proc/self/status (Linux) in MB, or None where there is none."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 2**10  # kB
    except OSError:
        pass
    return None


def reset_memory(device: torch.device) -> float:
    """Start a peak-memory window; returns the memory in use at its start, MB.

    CUDA: resets the allocator's peak. CPU on Linux: writing 5 to
    /proc/self/clear_refs resets the process's peak RSS (VmHWM, which
    getrusage's ru_maxrss also reads) to its current RSS. Elsewhere the CPU
    peak is the whole process's, since it started.
    """
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device) / 2**20
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    return _proc_status_mb("VmRSS") or 0.0


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: peak allocated since the reset; CPU: peak resident set size since the reset."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = _proc_status_mb("VmHWM")
    if peak is not None:
        return peak
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


def median_ms(seconds: list[float]) -> float:
    return 1000 * statistics.median(seconds)


# ---------------------------------------------------------------------------
# Jobs: each runs in its own subprocess and returns a dict.
# ---------------------------------------------------------------------------


def transfer_inputs(spec: dict) -> tuple[Tensor, Tensor]:
    """The textbook's style and content images for the transfer, both at the output's size.

    The content image is sized as texsynth sizes it. The tutorial needs the
    style image at the content's exact size (it runs the style image through
    the content-loss layers too, which compare it with the content's
    features), so it is stretched to that size; texsynth keeps its aspect.
    This changes the style targets a little, not the time per evaluation.
    """
    content_path, style_path = Path(spec["content"]), Path(spec["style"])
    width, height = recipe(spec, steps=1, transfer=True).output_size(upright_size(content_path))
    return load_rgb(style_path, (width, height)), load_rgb(content_path, (width, height))


def textbook_speed(spec: dict, device: torch.device) -> dict:
    """(a) for the textbook: per-evaluation times inside its L-BFGS run on the transfer."""
    style, content = transfer_inputs(spec)
    model, style_losses, content_losses = textbook_model(style, content, spec["layers"], device)
    clock, starts, ends = Clock(device), [], []
    needed = spec["warmup"] + spec["repeats"] + 1

    def on_eval(run: int, image: Tensor) -> None:
        ends.append(clock.now())
        if run >= needed:
            raise Enough

    start = content.clone().to(device)
    try:
        run_style_transfer(model, style_losses, content_losses, start, on_start=lambda: starts.append(clock.now()),
                           on_eval=on_eval)
    except Enough:
        pass
    skip = spec["warmup"] + 1
    evals = [clock.seconds(s, e) for s, e in zip(starts[skip:], ends[skip:])]
    steps = [clock.seconds(a, b) for a, b in zip(ends[skip - 1 : -1], ends[skip:])]
    return {"step_ms": median_ms(steps), "eval_ms": median_ms(evals), "size": list(content.shape[-2:])}


def texsynth_speed(spec: dict, device: torch.device) -> dict:
    """(a) for texsynth: the time between consecutive steps of its own run on the transfer."""
    clock, marks = Clock(device), []

    def on_step(progress: texsynth.Progress) -> None:
        marks.append((clock.now(), tuple(progress.image.shape[-2:]) if progress.image is not None else None))

    total = spec["warmup"] + spec["repeats"] + 1
    texsynth.synthesize(recipe(spec, steps=total, transfer=True, single_scale=True), device=device, on_step=on_step)
    # Only steps at the full size count, should texsynth run coarser scales first.
    full = max((shape for _, shape in marks if shape is not None), default=None)
    timed = [mark for mark, shape in marks if shape == full][spec["warmup"] :]
    steps = [clock.seconds(a, b) for a, b in zip(timed[:-1], timed[1:])]
    return {"step_ms": median_ms(steps)}


class Yardstick:
    """The three figures of ``Measure`` against style images (a blend by ``weights``): lower is closer.

    The style images (1, 3, H, W) are resized already, to the size the judged
    images' styles were made at.
    """

    def __init__(self, styles: list[Tensor], weights: list[float] | None = None, device: torch.device | None = None):
        self.measure = Measure()
        self.measure.extractor.to(device)
        self.styles = [style.to(device) for style in styles]
        self.weights = weights
        self.grams = self.measure.grams(self.styles, weights)

    @classmethod
    def of_texture(cls, spec: dict, device: torch.device) -> Yardstick:
        """For a ``spec["size"]`` px square texture of ``spec["style"]``."""
        style_path = Path(spec["style"])
        return cls([load_rgb(style_path, long_side_size(style_path, spec["size"]))], device=device)

    def __call__(self, image: Tensor) -> dict[str, float]:
        # No cuDNN autotuning: its trial workspaces would count as the measured side's peak.
        with torch.backends.cudnn.flags(enabled=True, benchmark=False):
            return {
                "style": self.measure.style_distance(image, self.grams),
                "sliced": self.measure.sliced_distance(image, self.styles, self.weights),
                "window": self.measure.worst_window(image, self.grams),
            }


def figures_text(figures: dict[str, float]) -> str:
    return (f"style distance {figures['style']:.4f}, sliced {figures['sliced']:.4f}, "
            f"worst window {figures['window']:.4f}")


def textbook_texture(spec: dict, device: torch.device) -> dict:
    """(b) for the textbook: ``evals`` evaluations from the noise start; time and yardstick at the last."""
    yardstick = Yardstick.of_texture(spec, device)
    height = width = spec["size"]
    style_path = Path(spec["style"])

    def run(evals: int) -> tuple[float, Tensor]:
        start = time.perf_counter()
        style = load_rgb(style_path, long_side_size(style_path, spec["size"]))
        model, style_losses, content_losses = textbook_model(style, None, spec["layers"], device)
        snapshot: dict[str, object] = {}

        def on_eval(count: int, image: Tensor) -> None:
            if count == evals:
                synchronize(device)
                snapshot["seconds"] = time.perf_counter() - start
                snapshot["image"] = image.detach().clone()  # the image this evaluation scored
                raise Enough

        image = noise_start(spec["start"], height, width, spec["seed"]).to(device)
        try:
            run_style_transfer(model, style_losses, content_losses, image, num_steps=evals, on_eval=on_eval)
        except Enough:
            pass
        return snapshot["seconds"], snapshot["image"]  # type: ignore[return-value]

    # The memory window covers the warm-up run too (same shapes, same peak): opened
    # after it, the CPU's RSS would already hold the memory malloc keeps from it.
    baseline = reset_memory(device)
    run(WARMUP_RUN)
    seconds, image = run(spec["evals"])
    peak = peak_memory_mb(device)
    return {"seconds": seconds, "evals": spec["evals"], "figures": yardstick(image), "peak_mb": peak,
            "baseline_mb": baseline}


class Reached(Exception):
    """Raised from texsynth's progress callback when its image reaches the textbook's figures."""


def texsynth_texture(spec: dict, device: torch.device) -> dict:
    """(b) for texsynth: its own run, checked every few steps until it is as close as the textbook."""
    yardstick = Yardstick.of_texture(spec, device)
    height = width = spec["size"]
    baseline = reset_memory(device)  # before the warm-up, as for the textbook
    loss = spec["texsynth_style_loss"]
    texsynth.synthesize(recipe(spec, steps=WARMUP_RUN, transfer=False, style_loss=loss), device=device)
    state: dict = {"steps": 0, "checking": 0.0, "figures": None, "seconds": None}
    start = time.perf_counter()

    def on_step(progress: texsynth.Progress) -> None:
        state["steps"] += 1
        image = progress.image
        if state["steps"] % spec["check_every"] or image is None or tuple(image.shape[-2:]) != (height, width):
            return
        synchronize(device)
        check_start = time.perf_counter()
        state["figures"] = yardstick(image[:1].detach())
        if all(state["figures"][name] <= value for name, value in spec["target"].items()):
            state["seconds"] = check_start - start - state["checking"]
            raise Reached
        state["checking"] += time.perf_counter() - check_start

    try:
        texsynth.synthesize(
            recipe(spec, steps=spec["max_steps"], transfer=False, style_loss=loss), device=device, on_step=on_step
        )
    except Reached:
        pass
    return {"seconds": state["seconds"], "steps": state["steps"], "figures": state["figures"],
            "elapsed": time.perf_counter() - start - state["checking"], "peak_mb": peak_memory_mb(device),
            "baseline_mb": baseline}


JOBS: dict[str, Callable[[dict, torch.device], dict]] = {
    "textbook-speed": textbook_speed,
    "texsynth-speed": texsynth_speed,
    "textbook-texture": textbook_texture,
    "texsynth-texture": texsynth_texture,
}


def run_job(spec: dict) -> dict:
    """Run one job in this process (the subprocess side); the result has its peak memory."""
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(spec["seed"])
    device = torch.device(spec["device"])
    load_vgg19_weights()  # decode once, outside every timing and memory window
    if device.type == "cuda":
        torch.zeros(1, device=device)  # create the context before the window opens
    baseline = reset_memory(device)
    result = JOBS[spec["kind"]](spec, device)
    # The texture jobs open their own window once their yardstick is built.
    result.setdefault("peak_mb", peak_memory_mb(device))
    result.setdefault("baseline_mb", baseline)
    return result


def spawn(spec: dict) -> dict:
    """Run a job in a fresh Python process, so its peak memory is its own."""
    command = [sys.executable, str(Path(__file__).resolve()), "--job", json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"job {spec['kind']} failed with exit code {done.returncode}")
    return json.loads(lines[-1][len("RESULT ") :])


# ---------------------------------------------------------------------------
# The parent: run the jobs, print as they finish, then the table of ratios.
# ---------------------------------------------------------------------------


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_text(result: dict, device: torch.device) -> str:
    if device.type == "cuda":
        return f"{result['peak_mb']:.0f} MB allocated ({result['baseline_mb']:.0f} MB at the start)"
    return f"{result['peak_mb']:.0f} MB RSS ({result['baseline_mb']:.0f} MB at the start)"


def memory_row(label: str, textbook: dict, ours: dict) -> tuple[str, str, str, str]:
    """Peak memory above each window's start: what the work itself needed."""
    extra = [textbook["peak_mb"] - textbook["baseline_mb"], ours["peak_mb"] - ours["baseline_mb"]]
    return (label, f"{extra[0]:.0f}", f"{extra[1]:.0f}", f"{extra[0] / max(extra[1], 1e-9):.2f}x")


def speed_part(base: dict, sizes: list[int], device: torch.device) -> list[tuple[str, str, str, str]]:
    rows = []
    print("\n(a) ms per loss+gradient evaluation, Gram + content, median after warm-up", flush=True)
    for size in sizes:
        spec = {**base, "size": size}
        textbook = spawn({**spec, "kind": "textbook-speed"})
        ours = spawn({**spec, "kind": "texsynth-speed"})
        ratio = textbook["step_ms"] / ours["step_ms"]
        height, width = textbook["size"]
        print(f"  {size} px ({width}x{height}): textbook {textbook['step_ms']:.1f} ms/step "
              f"({textbook['eval_ms']:.1f} ms closure alone), texsynth {ours['step_ms']:.1f} ms/step, "
              f"{ratio:.2f}x", flush=True)
        print(f"    peak memory: textbook {memory_text(textbook, device)}, texsynth {memory_text(ours, device)}",
              flush=True)
        rows.append((f"ms/eval @ {size} px", f"{textbook['step_ms']:.1f}", f"{ours['step_ms']:.1f}", f"{ratio:.2f}x"))
        rows.append(memory_row(f"peak MB @ {size} px (above start)", textbook, ours))
    return rows


def texture_part(base: dict, args: argparse.Namespace, device: torch.device) -> list[tuple[str, str, str, str]]:
    size = args.texture_size
    print(f"\n(b) time to equal quality, texture {Path(args.style).name} at {size} px "
          f"(yardstick: Measure's style distance, sliced distance and worst window)", flush=True)
    spec = {**base, "size": size, "evals": args.evals}
    textbook = spawn({**spec, "kind": "textbook-texture"})
    print(f"  textbook: {textbook['evals']} evaluations in {textbook['seconds']:.1f} s, "
          f"{figures_text(textbook['figures'])}; peak {memory_text(textbook, device)}", flush=True)
    ours = spawn({**spec, "kind": "texsynth-texture", "target": textbook["figures"], "check_every": args.check_every,
                  "max_steps": args.max_steps, "texsynth_style_loss": args.texsynth_style_loss})
    memory = f"peak {memory_text(ours, device)}"
    last = figures_text(ours["figures"]) if ours["figures"] else "never checked"
    label = "s to textbook's quality"
    if ours["seconds"] is None:
        print(f"  texsynth: not reached in {ours['steps']} steps ({ours['elapsed']:.1f} s), last {last}; {memory}",
              flush=True)
        time_row = (label, f"{textbook['seconds']:.1f}", f"> {ours['elapsed']:.1f}",
                    f"< {textbook['seconds'] / ours['elapsed']:.2f}x")
    else:
        ratio = textbook["seconds"] / ours["seconds"]
        print(f"  texsynth: reached {last} after {ours['steps']} steps in {ours['seconds']:.1f} s "
              f"(checked every {args.check_every} steps, checks not counted); {memory}; {ratio:.2f}x", flush=True)
        time_row = (label, f"{textbook['seconds']:.1f}", f"{ours['seconds']:.1f}", f"{ratio:.2f}x")
    return [time_row, memory_row(f"peak MB texture @ {size} px (above start)", textbook, ours)]


def print_table(rows: list[tuple[str, str, str, str]]) -> None:
    header = ("", "textbook", "texsynth", "ratio")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    print()
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:])]
        print("  " + "  ".join(cells))
    print("  (ratio: textbook / texsynth; above 1 means texsynth is faster or smaller)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="long sides for (a), px")
    parser.add_argument("--texture-size", type=int, help="texture side for (b); default 512 on cuda, 256 on cpu")
    parser.add_argument("--evals", type=int, default=300, help="textbook evaluations for (b)")
    parser.add_argument("--max-steps", type=int, default=300,
                        help="texsynth's steps in (b), split over its pyramid; default 300, its recipe default")
    parser.add_argument("--texsynth-style-loss", choices=["auto", "gram"], default="auto",
                        help="texsynth's style loss in (b): its default, or the textbook's Gram loss")
    parser.add_argument("--check-every", type=int, default=10, help="texsynth steps between yardstick checks")
    parser.add_argument("--warmup", type=int, help="evaluations skipped in (a); default 10 on cuda, 2 on cpu")
    parser.add_argument("--repeats", type=int, help="evaluations timed in (a); default 50 on cuda, 8 on cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads, both sides")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layers", choices=sorted(LAYER_SETS), default="relu",
                        help="loss layers: texsynth's (through relu5_1) or the tutorial's (through conv3_1)")
    parser.add_argument("--textbook-start", choices=["randn", "texsynth"], default="randn",
                        help="the textbook's texture start: the tutorial's white noise or texsynth's faint noise")
    parser.add_argument("--style", default=str(IMAGES / "starry_night.jpg"))
    parser.add_argument("--content", default=str(IMAGES / "chelsea.jpg"))
    parser.add_argument("--skip-speed", action="store_true", help="leave out (a)")
    parser.add_argument("--skip-texture", action="store_true", help="leave out (b)")
    parser.add_argument("--job", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.job:
        print("RESULT " + json.dumps(run_job(json.loads(args.job))), flush=True)
        return
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available on this machine")
    cuda = device.type == "cuda"
    args.texture_size = args.texture_size or (512 if cuda else 256)
    base = {
        "device": args.device,
        "threads": args.threads,
        "seed": args.seed,
        "layers": args.layers,
        "start": args.textbook_start,
        "style": str(Path(args.style).resolve()),
        "content": str(Path(args.content).resolve()),
        "warmup": args.warmup if args.warmup is not None else (10 if cuda else 2),
        "repeats": args.repeats if args.repeats is not None else (50 if cuda else 8),
    }
    stamp = datetime.datetime.now().astimezone().isoformat(timespec="minutes")
    print(f"texsynth {texsynth.__version__} vs the textbook (PyTorch tutorial) on {device_name(device)} "
          f"[{args.device}], {args.threads} threads, torch {torch.__version__}, {stamp}")
    print(f"layers: style {', '.join(LAYER_SETS[args.layers][0])}; content {', '.join(LAYER_SETS[args.layers][1])}")
    rows = []
    if not args.skip_speed:
        rows += speed_part(base, args.sizes, device)
    if not args.skip_texture:
        rows += texture_part(base, args, device)
    print(f"\nSummary: {device_name(device)} [{args.device}], {args.threads} threads, {stamp}")
    print_table(rows)


if __name__ == "__main__":
    main()
