"""UserError for problems the user can fix (bad file, bad option, missing data); Stopped for a run stopped early.

The CLI prints these as a single line and exits non-zero; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    pass


def where(path, lineno=None) -> str:
    """'file:line' prefix for error messages (line numbers are 1-based, as editors show them)."""
    return f"{path}:{lineno}" if lineno is not None else str(path)


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
