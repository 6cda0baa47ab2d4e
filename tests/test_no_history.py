"""The project speaks of itself, never of how it was made.

No tracked text file (code, comments, docs, recipes) may mention work periods, issue numbers, the machines
"of an earlier" anything, or history notes keyed on commits: a reader needs what is true now, measured on
hardware named as hardware ("an AMD EPYC with AVX512-BF16"), not the story of the work.
"""
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
W = "ses" + "sion"  # the word for a period of work, spelt so that this file does not use it

# case-insensitive; each names a way of telling the project's history instead of its state
FORBIDDEN = [re.compile(p, re.I) for p in (
    rf"\b{W}s?\b",                              # the word with a number, or "an earlier" one
    r"\bissue[- ]?#?\d+",                       # "issue 8", "issue-8 probes", "issue #8"
    r"\bearlier hosts?\b",
    r"\bhosts? of (?:an? |the )?(?:earlier|previous|former|later)\b",
    r"\bwork periods?\b",
    r"\b(?:before|since|until|after) commit\b",  # "before commit 6a20afc ...": state what is true now
)]
# library identifiers that merely contain a forbidden word
ALLOWED = re.compile(rf"""scope\s*=\s*["']{W}["']|\bstart_new_{W}\b|\bnew_{W}\b""", re.I)
SELF = Path(__file__).resolve().relative_to(ROOT).as_posix()  # its own patterns and samples


def history_words(text: str) -> list[tuple[int, str]]:
    """(line number, the words found) for every line that speaks of how the project was made."""
    found = []
    for n, line in enumerate(text.splitlines(), 1):
        line = ALLOWED.sub("", line)
        for pattern in FORBIDDEN:
            m = pattern.search(line)
            if m:
                found.append((n, m.group()))
                break
    return found


def tracked_text_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    files = []
    for name in filter(None, names.decode("utf-8", "surrogateescape").split("\0")):
        path = ROOT / name
        if name == SELF or not path.is_file():  # a file deleted in the working tree is not shipped
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        files.append(path)
    return files


def test_the_checker_flags_history_and_passes_identifiers():
    flagged = (f"measured in {W} 26", f"{W.title()}s 27-28: vanilla", "the Issue 8 probe", "issue-8 probes",
               f"on the slow AMD host of an earlier {W}", f"the faster hosts of earlier {W}s",
               "on the earlier host", "in this work period", "Before commit 6a20afc the runs split")
    for text in flagged:
        assert history_words(text), text
    allowed = (f'@pytest.fixture(scope="{W}")', f"subprocess.Popen(cmd, start_new_{W}=True)",
               f"os.setsid()  # like new_{W}", "an AMD EPYC with AVX512-BF16 (bf16, 2 threads)",
               f"the {W}less path", "tissue 8 samples", "Where was NAME born?")
    for text in allowed:
        assert not history_words(text), text
    assert history_words(f"ok\nfixture(scope='{W}') in {W} 3\n") == [(2, W)]


def test_no_tracked_file_speaks_of_how_the_project_was_made():
    files = tracked_text_files()
    assert any(p.name == "README.md" for p in files)
    bad = []
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        bad += [f"{path.relative_to(ROOT).as_posix()}:{n}: {words!r}" for n, words in history_words(text)]
    assert not bad, "history words (say what is true now, and name hardware as hardware):\n" + "\n".join(bad)
