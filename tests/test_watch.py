"""Watching a run: loss trace, frames and preview as on_step callbacks, alone and through the CLI."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from texsynth.cli import app
from texsynth.errors import TexsynthError
from texsynth.optimize import Progress
from texsynth.watch import Frames, LossTrace, Preview, chain

runner = CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1"})


def step(n, steps=5, batch=1):
    image = torch.full((batch, 3, 8, 12), n / steps)
    return Progress(n, steps, {"style": torch.tensor([0.5 / n] * batch)}, 0.1 * n, image=image)


def test_trace_appears_when_the_run_ends_with_one_json_line_per_step(tmp_path):
    path = tmp_path / "out" / "x.trace.jsonl"
    with LossTrace(path) as trace:
        for n in (1, 2, 3):
            trace(step(n))
        assert not path.exists(), "the trace must appear atomically, at the end"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert records[1] == {"step": 2, "elapsed": 0.2, "style": 0.25, "total": 0.25}
    assert not list(path.parent.glob(".*.part"))


def test_a_failed_run_leaves_no_trace_and_an_unstarted_one_creates_nothing(tmp_path):
    path = tmp_path / "out" / "x.trace.jsonl"
    with LossTrace(path):
        pass
    assert not (tmp_path / "out").exists()
    with pytest.raises(RuntimeError), LossTrace(path) as trace:
        trace(step(1))
        raise RuntimeError("boom")
    assert list((tmp_path / "out").iterdir()) == []


def test_frames_are_written_every_n_steps_and_at_the_last(tmp_path):
    frames = Frames(tmp_path / "frames", every=2)
    for n in range(1, 6):
        frames(step(n))
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["step-2.png", "step-4.png", "step-5.png"]
    assert Image.open(tmp_path / "frames" / "step-4.png").getpixel((0, 0)) == (204, 204, 204)


def test_preview_is_rewritten_and_shows_a_batch_side_by_side(tmp_path):
    preview = Preview(tmp_path / "live.png", interval=0.0)
    preview(step(1, batch=2))
    assert Image.open(tmp_path / "live.png").size == (24, 8)
    preview(step(5, batch=2))
    assert Image.open(tmp_path / "live.png").getpixel((20, 4)) == (255, 255, 255)


def test_preview_waits_between_writes_but_always_shows_the_last_step(tmp_path):
    preview = Preview(tmp_path / "live.png", interval=3600)
    preview(step(1))
    preview(step(2))
    assert Image.open(tmp_path / "live.png").getpixel((0, 0)) == (51, 51, 51)
    preview(step(5))
    assert Image.open(tmp_path / "live.png").getpixel((0, 0)) == (255, 255, 255)


def test_bad_watch_settings_are_refused_before_anything_runs(tmp_path):
    with pytest.raises(TexsynthError, match="preview: unsupported image type '.gif'"):
        Preview(tmp_path / "live.gif")
    with pytest.raises(TexsynthError, match="every: must be 1 or more"):
        Frames(tmp_path / "frames", every=0)


def test_chain_calls_each_callback_in_order():
    seen = []
    assert chain(None, None) is None
    chain(lambda p: seen.append(("a", p.step)), None, lambda p: seen.append(("b", p.step)))(step(3))
    assert seen == [("a", 3), ("b", 3)]


# ------------------------------------------------------------------ through the CLI


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_cli_writes_trace_frames_and_preview(write_recipe, tmp_path):
    path = write_recipe(size=32, steps=5, output="out/x.png")
    result = run("recipe", path, "--save-every", "2", "--preview", tmp_path / "live.png", "-q")
    assert result.exit_code == 0, result.output
    trace = [json.loads(line) for line in (tmp_path / "out" / "x.trace.jsonl").read_text().splitlines()]
    assert [r["step"] for r in trace] == [1, 2, 3, 4, 5] and all(r["total"] > 0 for r in trace)
    assert sorted(p.name for p in (tmp_path / "out" / "x.frames").iterdir()) == [
        "step-2.png",
        "step-4.png",
        "step-5.png",
    ]
    assert Image.open(tmp_path / "live.png").size == (32, 32)


def test_a_trace_counts_steps_and_seconds_over_the_whole_pyramid(write_recipe, tmp_path):
    path = write_recipe(size=64, steps=6, scales=2, output="out/x.png")
    assert run("recipe", path, "-q").exit_code == 0
    trace = [json.loads(line) for line in (tmp_path / "out" / "x.trace.jsonl").read_text().splitlines()]
    assert [r["step"] for r in trace] == [1, 2, 3, 4, 5, 6]
    elapsed = [r["elapsed"] for r in trace]
    assert elapsed == sorted(elapsed) and elapsed[3] > elapsed[2], "the finer scale goes on from the coarser's time"


def test_no_trace_writes_only_the_image(write_recipe, tmp_path):
    path = write_recipe(size=32, steps=2, output="out/x.png")
    assert run("recipe", path, "--no-trace", "-q").exit_code == 0
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["x.png"]


def test_a_preview_never_spends_more_than_a_hundredth_of_the_run_writing_itself(tmp_path, monkeypatch):
    clock = {"now": 0.0}
    monkeypatch.setattr("texsynth.watch.time.monotonic", lambda: clock["now"])

    def slow_save(*args, **kwargs):
        clock["now"] += 0.5  # a large image: half a second to encode

    monkeypatch.setattr("texsynth.watch.save_image", slow_save)
    preview = Preview(tmp_path / "live.png", interval=1.0)
    for n in range(1, 1001):
        preview(step(n, steps=2000))
        clock["now"] += 0.1  # a step
    assert 1 < preview.writes <= 3 and preview.seconds <= 0.01 * clock["now"] + 0.5


class Watched(Preview):
    """A preview that notes, after each write, whether its file is there."""

    seen: list[bool] = []

    def __call__(self, progress):
        super().__call__(progress)
        Watched.seen.append(self.path.is_file())


def test_a_terminal_session_gets_a_preview_beside_the_output_removed_at_the_end(write_recipe, tmp_path, monkeypatch):
    monkeypatch.setattr("texsynth.cli.synth.in_terminal", lambda: True)
    monkeypatch.setattr("texsynth.cli.synth.Preview", Watched)
    Watched.seen = []
    path = write_recipe(size=32, steps=3, output="out/x.png")
    result = run("recipe", path, "--no-trace")
    assert result.exit_code == 0, result.output
    assert f"preview: {tmp_path / 'out' / 'x.preview.png'}" in result.stderr
    assert Watched.seen and all(Watched.seen), "written while it ran"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["x.png"], "and gone when it ended"


@pytest.mark.parametrize("options", [["--no-preview"], ["-q"]])
def test_no_preview_and_quiet_runs_write_none(options, write_recipe, tmp_path, monkeypatch):
    monkeypatch.setattr("texsynth.cli.synth.in_terminal", lambda: True)
    monkeypatch.setattr("texsynth.cli.synth.Preview", Watched)
    Watched.seen = []
    result = run("recipe", write_recipe(size=32, steps=2, output="out/x.png"), "--no-trace", *options)
    assert result.exit_code == 0, result.output
    assert Watched.seen == [] and "preview:" not in result.stderr


def test_the_default_preview_never_clobbers_a_file_in_its_place(write_recipe, tmp_path, monkeypatch):
    monkeypatch.setattr("texsynth.cli.synth.in_terminal", lambda: True)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x.preview.png").write_bytes(b"mine")
    result = run("recipe", write_recipe(size=32, steps=2, output="out/x.png"), "--no-trace")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "x.preview.png").read_bytes() == b"mine" and "preview:" not in result.stderr
    assert (tmp_path / "out" / "x.png").is_file()


def test_control_options_override_the_recipe(write_recipe, tmp_path, images):
    path = write_recipe(content={"image": "images/chelsea.jpg"}, styles=[{"image": "images/brick.jpg"}] * 2)
    result = run(
        "recipe",
        path,
        "--dry-run",
        "--preserve-colour",
        "luminance",
        "--init-image",
        images / "gravel.jpg",
        "--style-scale",
        "0.5,2",
        "--style-weight",
        "3",
        "--style-layers",
        "relu1_1,relu3_1:0.5",
        "--content-weight",
        "0.5",
        "--content-layers",
        "relu3_2:1,relu4_2:2",
        "--tv-weight",
        "0.1",
        "--pooling",
        "avg",
    )
    assert result.exit_code == 0, result.output
    effective = yaml.safe_load(result.stdout)
    assert effective["preserve_colour"] == "luminance" and effective["pooling"] == "avg"
    assert effective["init"] == "image" and effective["init_image"] == str(images / "gravel.jpg")
    assert [s["scale"] for s in effective["styles"]] == [0.5, 2.0]
    assert effective["style_weight"] == 3.0 and effective["style_layers"] == {"relu1_1": 1.0, "relu3_1": 0.5}
    assert effective["content"] == {
        "image": str(images / "chelsea.jpg"),
        "weight": 0.5,
        "layers": {"relu3_2": 1.0, "relu4_2": 2.0},
    }
    assert effective["tv_weight"] == 0.1


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--preserve-colour", "luminance"), "preserve_colour (from the command line): 'luminance' keeps a content"),
        (("--preserve-colour", "sepia"), "preserve_colour (from the command line): must be one of"),
        (("--style-scale", "0.5,2"), "styles.scale (from the command line): 2 values for 1 styles"),
        (("--style-scale", "big"), "--style-scale: must be a number"),
        (("--content-weight", "2"), "content.weight (from the command line): the recipe has no content"),
        (("--style-layers", "relu1_1:x"), "--style-layers: must be layers like"),
        (("--style-layers", "relu9_1"), "style_layers (from the command line): unknown VGG19 layer 'relu9_1'"),
        (("--init", "image"), "init (from the command line): 'image' needs init_image"),
        (("--pooling", "median"), "pooling (from the command line): must be one of 'max' or 'avg'"),
        (("--preview", "live.gif"), "--preview: unsupported image type '.gif'"),
        (("--save-every", "0"), "--save-every: must be at least 1, got 0"),
    ],
)
def test_bad_control_options_are_one_line_and_write_nothing(write_recipe, tmp_path, args, expected):
    path = write_recipe(output="out/x.png")
    result = run("recipe", path, *args)
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and expected in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()
