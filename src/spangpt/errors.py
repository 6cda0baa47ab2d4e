"""UserError for problems the user can fix (bad file, bad option, missing data); Stopped for a run stopped early.

The CLI prints these as a single line and exits non-zero; anything else is a bug and keeps its traceback.
"""

import sys
from pathlib import Path


class UserError(Exception):
    pass


class BadValue(ValueError):
    """A config value no run could use: `key` must be `want`. config.py turns it into a UserError naming the
    recipe table or the command line it came from."""

    def __init__(self, key: str, want: str, value):
        self.key, self.want, self.value = key, want, value
        super().__init__(f"{key} must be {want}, got {value!r}")


def where(path, lineno=None) -> str:
    """'file:line' prefix for error messages (line numbers are 1-based, as editors show them)."""
    return f"{path}:{lineno}" if lineno is not None else str(path)


def run_script(main) -> None:
    """Run a script's main() as the CLI runs a command: a UserError is one line on stderr and exit status 2.

    For the benchmark scripts, which take the same files as the CLI and should fail on them as plainly.
    """
    try:
        rc = main()
    except UserError as e:
        print(f"{Path(sys.argv[0]).name}: error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(rc or 0)


RERUN = "run the same command again to continue"  # the hint of commands that always resume (reproduce, demo)


class Stopped(Exception):
    """Training stopped early on request (a signal, or --max-minutes used up) after saving its state.

    Not a mistake, but the command did not finish: the CLI prints one line and exits with `exit_code`
    (130 SIGINT, 143 SIGTERM, 75 time budget), never 0, so a pipeline does not move on to the next stage.
    """

    def __init__(self, why: str, step: int, state, exit_code: int):
        self.why, self.step, self.state, self.exit_code = why, step, state, exit_code
        self.hint = "continue with the same command plus --resume auto"
        super().__init__(why)

    def __reduce__(self):  # picklable with all its fields (reproduce --jobs sends it between processes)
        return Stopped, (self.why, self.step, self.state, self.exit_code)

    def __str__(self) -> str:
        saved = f"state saved to {self.state}; {self.hint}" if self.state else "no state saved (no --out)"
        return f"{self.why} at step {self.step}; {saved}"
