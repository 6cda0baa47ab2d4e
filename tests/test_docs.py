"""The README and docs/ link to files and to each other's sections: every such link must resolve."""
import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchor(heading: str) -> str:
    """GitHub's id for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower()
    text = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)  # no headings in code
    return {anchor(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, flags=re.M)}


def test_anchor_matches_github():
    assert anchor("Matching the original's pretraining curve") == "matching-the-originals-pretraining-curve"
    assert anchor("Extractable knowledge: where it stands") == "extractable-knowledge-where-it-stands"
    assert anchor("More epochs, and entity-centred examples") == "more-epochs-and-entity-centred-examples"
    assert anchor("Many GPUs / many machines") == "many-gpus--many-machines"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(doc):
    text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.S)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+://", target):
            continue  # the web: not checked offline
        file, _, frag = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if not path.exists():
            broken.append(f"{target}: no file {path.relative_to(ROOT) if ROOT in path.parents else path}")
        elif frag and path.suffix == ".md" and frag not in anchors(path):
            broken.append(f"{target}: no heading #{frag} in {path.relative_to(ROOT)}")
    assert not broken, "\n".join(broken)
