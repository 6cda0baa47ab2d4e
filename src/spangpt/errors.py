"""One exception type for problems the user can fix (bad file, bad option, missing data).

The CLI prints these as a single line and exits non-zero; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    pass


def where(path, lineno=None) -> str:
    """'file:line' prefix for error messages (line numbers are 1-based, as editors show them)."""
    return f"{path}:{lineno}" if lineno is not None else str(path)
