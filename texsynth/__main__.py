"""``python -m texsynth`` and the ``texsynth`` command: signal handling first, then the CLI.

The CLI imports torch, which takes seconds; Ctrl-C (or SIGTERM, SIGHUP) in that
time is one line and exit code 128 + the signal, not a traceback.
"""

from __future__ import annotations

import sys

from .interrupts import exit_code, signals_as_interrupts

STARTING = "interrupted while starting; nothing was written"


def main() -> None:
    with signals_as_interrupts():
        try:
            from .cli import main as run
        except KeyboardInterrupt:
            sys.stderr.write(STARTING + "\n")
            sys.exit(exit_code())
        run()


if __name__ == "__main__":
    main()
