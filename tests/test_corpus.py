"""corpus.py: names at the head of wiki lines, capitalised runs, focus examples, questions (hand-computed)."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from spangpt.corpus import (MAX_SHOWN, capitalised_runs, focus_example, head_length, lines_by_name, max_shown,
                            name_in_question, name_of, question)
from spangpt.vocab import MASK


@pytest.mark.parametrize("line, name", [
    ("Khatchig Mouradian. Khatchig Mouradian is a journalist born in Lebanon .", "Khatchig Mouradian"),
    ("Douglas P. Fry. Douglas P Fry (born 1953 in Boston) .", "Douglas P. Fry"),
    ("A. G. E. Blake. Anthony Blake was born in the UK .", "A. G. E. Blake"),
    ("J.C. Patterson. Born in Armagh, Ireland in 1839, Patterson was educated .", "J.C. Patterson"),
    ("Gritakumar E. Chitty. Gritakumar E Chitty (b. 14 June 1939, Colombo) .", "Gritakumar E. Chitty"),
    ("Asa G. Yancey, Sr.. Asa G Yancey Sr., M.D., was born in Atlanta .", "Asa G. Yancey, Sr."),
    ("Anastasius I. Pope Saint Anastasius I, born in Rome .", "Anastasius I"),  # no other ". ": the first
    ("Ann Lee. She moved to the U. S. in 1950 .", "Ann Lee"),  # an initial after the name changes nothing
    ("Ann Lee (painter). Ann Lee was born in Paris .", "Ann Lee (painter)"),  # a bracket ends no name
    ('"Weird Al" Yankovic. Alfred Yankovic was born in Downey .', '"Weird Al" Yankovic'),
    ("Sinéad O'Connor. Sinéad O'Connor was born in Dublin .", "Sinéad O'Connor"),
])
def test_the_name_head_runs_past_initials(line, name):
    """The first ". " ended the name even after an initial ("Douglas P. "): 145 of the real 2,937 lines, whose
    `focus`, `window` and `salient_mask` examples then kept only part of the name."""
    assert line[:head_length(line)] == name + ". "
    assert name_of(line) == name


@pytest.mark.parametrize("line", ["no name here .", "Plato.", ". starts with a dot", ""])
def test_a_line_without_a_head_has_no_name(line):
    assert head_length(line) == 0 and name_of(line) == ""


def test_lines_by_name_keeps_each_names_first_line_under_its_whole_name():
    wiki = ["Douglas P. Fry. Douglas P. Fry was born in Leeds .",
            "Ann Lee. Ann Lee was born in Paris .",
            "Ann Lee. A second line for the same name .",
            "no name here ."]
    assert lines_by_name(wiki) == {"Douglas P. Fry": wiki[0], "Ann Lee": wiki[1]}


@pytest.mark.parametrize("line, runs", [
    ("Ann Lee. born in New York City, USA .", ["New York City", "USA"]),
    ("Ann Lee. born in (New York City) and (\"Big Apple\") .", ["New York City", "Big Apple"]),
    ("Ann Lee. born in Paris (France) .", ["Paris", "France"]),
    ("Ann Lee. a (New) York story .", ["New", "York"]),
    ("Ann Lee. studied at Harvard (MA, 1950) .", ["Harvard", "MA"]),
    ("Ann Lee. born in 'Little Rock', Arkansas .", ["Little Rock", "Arkansas"]),
    ("Ann Lee. born in a small town .", []),
])
def test_capitalised_runs_keep_bracketed_names_whole(line, runs):
    """Opening punctuation used to end a run after its first word ("(New York City)" gave "New" and
    "York City"), to join the runs around it ("Harvard (MA": 257 of the real 2,937 lines had such runs) and
    to shift the start by one character only ('("New' gave '"Ne')."""
    got = capitalised_runs(line, len("Ann Lee. "))
    assert [line[a:b] for a, b in got] == runs


def test_capitalised_runs_start_after_the_given_offset():
    line = "Ann Lee. Ann Lee was born in Paris ."
    assert capitalised_runs(line, 0) == [(0, 7), (9, 16), (29, 34)]  # "Ann Lee" ends at its ".": a new run
    assert capitalised_runs(line, 9) == [(9, 16), (29, 34)]


class _Pick:
    """A random generator whose choice() is fixed: the first or the last of what it is offered."""
    def __init__(self, last: bool):
        self.last = last

    def choice(self, xs):
        return xs[-1] if self.last else xs[0]


def test_focus_example_by_hand():
    line = "Ann Lee. Ann Lee was a painter born in Paris , France ."
    head, run = 9, (39, 44)
    assert line[slice(*run)] == "Paris" and head_length(line) == head
    # the window starts at one of the last five word starts up to the run: "a", "painter", "born", "in", "Paris"
    earliest, latest = _Pick(last=False), _Pick(last=True)
    assert focus_example(line, head, run, 50, earliest) == "Ann Lee. a painter born in ⁇ , France .⁇Paris⁇"
    assert focus_example(line, head, run, 50, latest) == "Ann Lee. ⁇ , France .⁇Paris⁇"
    # the drawn length 20 less the 9 characters of the name: the window runs to character 39 + 11 = 50
    assert focus_example(line, head, run, 20, latest) == "Ann Lee. ⁇ , Fra⁇Paris⁇"
    # a window shorter than the run still masks all of it
    assert focus_example(line, head, run, 10, latest) == "Ann Lee. " + MASK * 2 + "Paris" + MASK


def test_max_shown_is_three_quarters_of_the_block():
    assert MAX_SHOWN == max_shown(128) == 96
    assert max_shown(100) == 75 and max_shown(33) == 24  # int(24.75)


@pytest.mark.parametrize("name", ["Ann Lee", "Douglas P. Fry", "J.C. Patterson", "Asa G. Yancey, Sr.",
                                  "Sinéad O'Connor", '"Weird Al" Yankovic', "Ann Lee (painter)", "Who? born?", ""])
def test_question_and_name_in_question_are_inverses(name):
    q = question(name)
    assert q == "Where was " + name + " born?"
    assert name_in_question(q) == name


def test_question_of_a_name_with_initials_by_hand():
    assert question("Douglas P. Fry") == "Where was Douglas P. Fry born?"
    assert name_in_question("Where was J.C. Patterson born?") == "J.C. Patterson"
    assert name_in_question("Where was Asa G. Yancey, Sr. born?") == "Asa G. Yancey, Sr."


@pytest.mark.parametrize("q", ["Who is Ann Lee?", "Where was born?", "where was Ann Lee born?",
                               "Where was Ann Lee born", "Where was Ann Lee born?\n", " Where was Ann Lee born?",
                               "Where is Ann Lee born?", ""])
def test_a_question_of_another_form_names_no_one(q):
    """"Where was born?" both starts with "Where was " and ends with " born?", the two sharing its space."""
    assert name_in_question(q) is None


@given(st.text(max_size=40))
def test_every_name_comes_back_out_of_its_question(name):
    assert name_in_question(question(name)) == name


def test_answer_position_says_where_the_answer_first_ends_in_the_line():
    from spangpt.corpus import answer_position

    line = "Ann Lee. Ann Lee was born in Paris ." + " x" * 40 + " Rome ."
    assert line.index("Paris") + 5 <= 96 < line.index("Rome") + 4
    assert answer_position(line, "Paris") == "first 96"
    assert answer_position(line, "Rome") == "past 96"
    assert answer_position(line, "Oslo") == "not in line"
    assert answer_position("", "Paris") == answer_position(line, "") == "not in line"
    ends_at_96 = "a" * 90 + "Lisbon"
    assert answer_position(ends_at_96, "Lisbon") == "first 96" and answer_position(ends_at_96 + "x", "x") == "past 96"
    assert answer_position("Florence Nightingale. Born in Rome .", "Florence") == "first 96"
    assert answer_position("Florence Nightingale. Born in Rome .", "Florence", 22) == "not in line"
