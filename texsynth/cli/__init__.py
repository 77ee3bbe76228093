"""The ``texsynth`` command: thin typer commands over the Python API.

Each command parses its options, calls one API function and shows progress
with rich; ``common`` holds the app and the error edge (one line on stderr,
exit code 2). This is the one list of commands: a command module defines its
functions, and they are registered here, in the order ``--help`` lists them.
"""

from __future__ import annotations

from . import fast, share, synth, tiles
from .common import Command, app, fail_cleanly, main

COMMANDS = (
    ("recipe", synth.recipe_command),
    ("validate", share.validate_command),
    ("schema", share.schema_command),
    ("new", share.new_command),
    ("pack", share.pack_command),
    ("show", share.show_command),
    ("batch", tiles.batch_command),
    ("tile-preview", tiles.tile_preview_command),
    ("train", fast.train_command),
    ("sample", fast.sample_command),
    ("apply", fast.apply_command),
    ("export", fast.export_command),
)

for _name, _command in COMMANDS:
    app.command(_name, cls=Command)(fail_cleanly(_command))

__all__ = ["COMMANDS", "app", "main"]
