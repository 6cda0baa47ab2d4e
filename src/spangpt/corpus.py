"""What the corpus means: the name at the head of a wiki line, its capitalised runs, the question about it.

A wiki line is "NAME. text..." and a question is "Where was NAME born?". Pretraining, the benchmarks and the
tests all read names out of both; they do it here, once, so a name with an initial ("Douglas P. Fry") is the
same name everywhere.
"""
from __future__ import annotations

import functools
import random
import re

from spangpt.vocab import MASK

# ----------------------------------------------------------------------------- wiki lines


def max_shown(block_size: int) -> int:
    """The most characters of a line span corruption keeps (its drawn length is at most this): the original's
    int(block_size * 3/4). Without `window` or `focus`, no example ever shows a line past them."""
    return int(block_size * 3 / 4)


MAX_SHOWN = max_shown(128)  # 96: every recipe's block_size is 128

_INITIAL = re.compile(r"(?:^|\s)(?:[A-Z]\.)*[A-Z]$")  # "P" or "J.C" just before a ". "


def head_length(line: str) -> int:
    """Length of the leading "NAME. " of a wiki line (0 if it has none).

    A ". " after an initial is inside the name ("Douglas P. Fry. Douglas P Fry was...", "J.C. Patterson.
    Born in..."), unless no other ". " follows ("Anastasius I. Pope Saint..."). On the real wiki.txt the
    heads then match the names in the QA files on all 2,937 lines, against 2,792 for the first ". "."""
    first = i = line.find(". ")
    while i > 0 and _INITIAL.search(line, 0, i):
        i = line.find(". ", i + 1)
    if i <= 0:
        i = first
    return i + 2 if i > 0 else 0


def name_of(line: str) -> str:
    """The name a wiki line is about: its head without the ". " ("" if it has none)."""
    n = head_length(line)
    return line[: n - 2] if n else ""


def lines_by_name(lines: list[str]) -> dict[str, str]:
    """{name: its first line}: a person's line, as the questions name them (lines without a name left out)."""
    out: dict[str, str] = {}
    for line in lines:
        name = name_of(line)
        if name:
            out.setdefault(name, line)
    return out


def answer_position(line: str, answer: str, start: int = 0) -> str:
    """Where an answer first occurs in a wiki line, from `start` on (head_length(line): not in the name, as
    "Florence" in "Florence Nightingale. "): "first 96" (it ends within the MAX_SHOWN characters the original's
    span corruption ever shows), "past 96", or "not in line" (an empty line: a person without one)."""
    i = line.find(answer, start) if answer else -1
    return "not in line" if i < 0 else "first 96" if i + len(answer) <= MAX_SHOWN else "past 96"


def capitalised_runs(line: str, after: int) -> list[tuple[int, int]]:
    """(start, end) of each run of capitalised words in line[after:], punctuation around a word excluded;
    punctuation before a word starts a new run, after it ends the run:
    "born in New York City, USA ." -> "New York City", "USA"; "(New York City)" -> "New York City"."""
    runs: list[list[int]] = []
    open_run = False
    for m in re.finditer(r"\S+", line[after:]):
        word = m.group()
        inner = word.lstrip("(\"'")
        core = inner.rstrip(",.;:)!?'\"")
        if core[:1].isupper():
            start = after + m.start() + len(word) - len(inner)
            end = start + len(core)
            if open_run and inner == word:  # "New York": continue; "New (York": a new run
                runs[-1][1] = end
            else:
                runs.append([start, end])
            open_run = core == inner  # punctuation after the word ends the run
        else:
            open_run = False
    return [(a, b) for a, b in runs]


@functools.lru_cache(maxsize=1 << 16)
def focus_runs(line: str) -> tuple[int, tuple[tuple[int, int], ...]]:
    """(head_length(line), the capitalised runs after the name that are not the name again): what a focus
    example may mask. Cached: the same lines come back every epoch, and finding runs is most of the cost
    of drawing one."""
    head = head_length(line)
    return head, tuple((a, b) for a, b in capitalised_runs(line, head) if line[a:b] not in line[:head])


def focus_example(line: str, head: int, run: tuple[int, int], length: int, rng: random.Random) -> str:
    """NAME. <0-4 words before the run>⁇<what follows, up to the drawn length>⁇<run>⁇

    "Khatchig Mouradian. translator born in ⁇ .⁇Lebanon⁇": the original's format and masking, on a window
    of the line that starts up to four words before one of its capitalised runs and masks that run.
    head: head_length(line); rng: only its choice() is used, to pick the word the window starts at."""
    start, end = run
    words = [head] + [i + 1 for i in range(head, start) if line[i] == " "]  # word starts up to the run's
    s = rng.choice(words[-5:])
    stop = min(len(line), max(end, s + length - head))
    return line[:head] + line[s:start] + MASK + line[end:stop] + MASK + line[start:end] + MASK


# ----------------------------------------------------------------------------- questions

_ASK, _BORN = "Where was ", " born?"


def question(name: str) -> str:
    """The question the QA files ask about a person."""
    return _ASK + name + _BORN


def name_in_question(q: str) -> str | None:
    """The NAME of "Where was NAME born?" (question's inverse); None for a question not of that form."""
    if len(q) < len(_ASK) + len(_BORN) or not (q.startswith(_ASK) and q.endswith(_BORN)):
        return None
    return q[len(_ASK) : len(q) - len(_BORN)]
