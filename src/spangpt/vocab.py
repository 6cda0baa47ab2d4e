"""Character vocabulary: id 0 = PAD '□', id 1 = MASK '⁇', ids 2.. = the sorted characters of the corpus.

This is the original CS224N layout. The vocabulary travels inside every checkpoint, so evaluation never
needs the pretraining corpus again.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from spangpt.errors import UserError, where

PAD = "\u25a1"  # □  padding; its targets are ignored by the loss
MASK = "\u2047"  # ⁇  separates prefix / suffix / masked span, and question / answer
PAD_ID, MASK_ID = 0, 1


@dataclass(frozen=True)
class Vocab:
    chars: tuple[str, ...]  # chars[i] is the character with id i
    stoi: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if not all(isinstance(c, str) and len(c) == 1 for c in self.chars):
            raise UserError("vocabulary entries must be single characters")
        if self.chars[:2] != (PAD, MASK) or len(set(self.chars)) != len(self.chars):
            raise UserError("vocabulary must start with PAD, MASK and hold each character once")
        object.__setattr__(self, "stoi", {c: i for i, c in enumerate(self.chars)})

    @classmethod
    def from_text(cls, text: str, source: str = "<text>") -> Vocab:
        chars = set(text)
        for special in (PAD, MASK):
            if special in chars:
                lineno = text[: text.index(special)].count("\n") + 1
                raise UserError(f"{where(source, lineno)}: the corpus contains the reserved character {special!r}")
        return cls((PAD, MASK, *sorted(chars)))

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, s: str, source: str = "<text>", lineno: int | None = None) -> list[int]:
        try:
            return [self.stoi[c] for c in s]
        except KeyError as e:
            c = e.args[0]
            raise UserError(
                f"{where(source, lineno)}: character {c!r} (U+{ord(c):04X}) is not in the model's vocabulary"
            ) from None

    def decode(self, ids) -> str:
        return "".join(self.chars[i] for i in ids)

    def to_list(self) -> list[str]:
        return list(self.chars)

    @classmethod
    def from_list(cls, chars: list[str]) -> Vocab:
        return cls(tuple(chars))
