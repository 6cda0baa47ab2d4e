import pytest

from spangpt.errors import UserError
from spangpt.vocab import MASK, MASK_ID, PAD, PAD_ID, Vocab


def test_layout_pad_mask_then_sorted_chars():
    v = Vocab.from_text("cab\nba")
    assert v.chars == (PAD, MASK, "\n", "a", "b", "c")
    assert (PAD_ID, MASK_ID) == (v.stoi[PAD], v.stoi[MASK]) == (0, 1)
    assert v.encode("abc") == [3, 4, 5]
    assert v.decode(v.encode("cab\n")) == "cab\n"


def test_round_trip_through_list():
    v = Vocab.from_text("héllo wörld")
    assert Vocab.from_list(v.to_list()) == v


def test_unknown_character_names_it_and_the_line():
    v = Vocab.from_text("abc")
    with pytest.raises(UserError, match=r"dev\.tsv:7: character 'é' \(U\+00E9\)"):
        v.encode("abé", "dev.tsv", 7)


def test_reserved_character_in_corpus_is_an_error():
    with pytest.raises(UserError, match=r"wiki\.txt:2: .*reserved"):
        Vocab.from_text("ok\nbad " + MASK, "wiki.txt")
