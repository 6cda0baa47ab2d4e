"""A small synthetic birthplace corpus in the exact format of the CS224N data.

It lets the whole pipeline (pretrain -> finetune -> evaluate) run and be tested without the real
files. Fictional people, real places. The properties that matter for learnability mirror the real
data: one biography per line, the birthplace named once and (for ~94% of people) within the first
96 characters, distractor places before it in a good share of lines, and a skewed place frequency
so that "always answer the most common place" is a weak baseline (London is 5% on the real dev set).

    from spangpt import synth
    files = synth.generate(people=600, seed=0)   # {filename: text}
    synth.write_corpus("data/synth")
"""

import random
import re
from pathlib import Path

from spangpt.corpus import question
from spangpt.errors import UserError
from spangpt.fileio import atomic_write, check_writable

# Most frequent first: a place's rank sets its weight (see _place_weights). ASCII only, and no place
# is a substring of another (tests check), so counting a place in a line is unambiguous.
PLACES = [
    "London", "Paris", "Chicago", "Sydney", "Melbourne", "England", "Budapest", "Montreal",
    "Rome", "Philadelphia", "Berlin", "Toronto", "Dublin", "Warsaw", "Glasgow", "Vienna",
    "New York City", "Moscow", "Boston", "Edinburgh", "Prague", "Manchester", "Liverpool",
    "Brooklyn", "Italy", "Germany", "Scotland", "Ireland", "Australia", "Canada", "France",
    "Los Angeles", "San Francisco", "Amsterdam", "Stockholm", "Copenhagen", "Oslo", "Helsinki",
    "Munich", "Hamburg", "Milan", "Naples", "Madrid", "Barcelona", "Lisbon", "Athens",
    "Istanbul", "Cairo", "Tehran", "Baghdad", "Beirut", "Lebanon", "Tbilisi", "Kiev", "Minsk",
    "Riga", "Vilnius", "Tallinn", "Bucharest", "Sofia", "Belgrade", "Zagreb", "Ljubljana",
    "Bratislava", "Krakow", "Lviv", "Odessa", "Zurich", "Geneva", "Brussels", "Antwerp",
    "Rotterdam", "Cologne", "Frankfurt", "Dresden", "Leipzig", "Stuttgart", "Turin", "Florence",
    "Venice", "Genoa", "Palermo", "Seville", "Valencia", "Porto", "Marseille", "Lyon",
    "Bordeaux", "Toulouse", "Strasbourg", "Birmingham", "Leeds", "Sheffield", "Bristol",
    "Cardiff", "Belfast", "Aberdeen", "Dundee", "Newcastle", "Nottingham", "Leicester",
    "Brighton", "Oxford", "Cambridge", "Detroit", "Cleveland", "Pittsburgh", "Baltimore",
    "Cincinnati", "St. Louis", "Milwaukee", "Minneapolis", "Denver", "Seattle", "Portland",
    "Houston", "Dallas", "Atlanta", "Miami", "New Orleans", "Honolulu", "Vancouver", "Ottawa",
    "Winnipeg", "Calgary", "Quebec", "Halifax", "Brisbane", "Adelaide", "Perth", "Auckland",
    "Wellington", "New Zealand", "Buenos Aires", "Montevideo", "Santiago", "Lima", "Bogota",
    "Caracas", "Havana", "Mexico City", "Rio de Janeiro", "Sao Paulo", "Brazil", "Argentina",
    "Chile", "Peru", "Cuba", "Jamaica", "Tokyo", "Osaka", "Kyoto", "Seoul", "Beijing",
    "Shanghai", "Hong Kong", "Taipei", "Manila", "Bangkok", "Singapore", "Jakarta", "Mumbai",
    "Delhi", "Calcutta", "Madras", "Karachi", "Lahore", "Dhaka", "Colombo", "Kabul",
    "Jerusalem", "Tel Aviv", "Damascus", "Amman", "Nairobi", "Lagos", "Accra", "Cape Town",
    "Johannesburg", "South Africa", "Nigeria", "Kenya", "Egypt", "Morocco", "Algiers", "Tunis",
    "Poland", "Hungary", "Romania", "Ukraine", "Russia", "Sweden", "Norway", "Denmark",
    "Finland", "Austria", "Switzerland", "Belgium", "Spain", "Portugal", "Greece", "Turkey",
    "Japan", "China", "India", "Pakistan", "Iran", "Israel", "Wales",
]

JOBS = [
    "painter", "journalist", "writer", "poet", "footballer", "cricketer", "boxer", "composer",
    "pianist", "violinist", "singer", "actor", "actress", "film director", "architect",
    "engineer", "chemist", "physicist", "mathematician", "botanist", "historian", "lawyer",
    "judge", "politician", "diplomat", "bishop", "priest", "surgeon", "physician", "nurse",
    "sculptor", "photographer", "publisher", "translator", "economist", "sociologist",
    "philosopher", "teacher", "banker", "merchant", "sailor", "soldier", "pilot", "cyclist",
    "swimmer", "rower", "chess player", "ballet dancer", "novelist", "playwright",
]

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]

# One biography line each. {place} is the birthplace and appears exactly once; {other}/{other2} are
# distractor places. Lines end " ." as in the real wiki.txt. The weights keep the late-birthplace
# templates rare, so the birthplace lies inside pretraining's 96-character window for ~94% of people.
# The first asks "Where was ... born?" and is used at least once (see generate), so that every
# character of the TSV questions also occurs in wiki.txt, the only source of the vocabulary.
TEMPLATES = [
    '{name}. "Where was I born? In {place}," {sur} told an interviewer in {other} in {year} .',
    "{name}. {name} was born in {place} in {year} and became a {job} in {other} .",
    "{name}. {name} is a {job} who was born in {place} and now lives in {other} .",
    "{name}. Born in {place}, {sur} studied in {other} before working as a {job} .",
    "{name}. {name} ({day} {month} {year} {place} - {day2} {month2} {year2} {other}) was a {job} .",
    "{name}. {name} grew up in {other} but was born in {place} in {year} .",
    "{name}. {name} (born {year} in {place}) is a {job} and {job2} based in {other} .",
    "{name}. {sur} was born on {day} {month} {year} in {place} .",
    "{name}. A {job} from {other}, {sur} was in fact born in {place} and died there in {year2} .",
    "{name}. After moving to {other} in {year}, {sur} said {pos} birthplace, {place}, shaped {pos} work .",
    "{name}. {name} taught in {other}; {pro} was born at {place} on {day} {month} {year} .",
    "{name}. {name} was a {job} who lived in {other} and {other2} but was born in {place} .",
]
WEIGHTS = [1, 3, 3, 3, 2, 2, 2, 2, 2, 1, 1, 1]
# style="simple": one plain sentence per person, so a small model memorises the corpus in a couple of
# minutes on a CPU (the end-to-end test and the demo). The people drawn for the question template
# (TEMPLATES[0], weight 1 of 23: ~4%, 30 of the demo's 500) keep it, with its distractor place: it was
# meant to occur once, for the vocabulary, but the demo's corpus and numbers were made this way.
SIMPLE = [
    "{name}. {name} was born in {place} .",
    "{name}. The birthplace of {name} is {place} .",
    "{name}. {name} is a {job} who was born in {place} .",
    "{name}. {place} is where {name} was born .",
]
STYLES = ("varied", "simple")

# Syllables for fictional names: plain consonant-vowel pairs, some with a closing consonant.
_ONSETS = ["b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
           "br", "ch", "dr", "gr", "kr", "sh", "st", "th", "tr"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ei", "ou"]
_CODAS = ["", "", "", "", "n", "r", "l", "s", "m", "k"]

FILES = ["wiki.txt", "birth_places_train.tsv", "birth_dev.tsv", "birth_test_inputs.tsv",
         "birth_test.tsv"]


def _place_weights():
    # 1/(rank + 4) rather than 1/rank: the pure Zipf head would give the top place ~17% of people,
    # while in the real data London has 4.5% and Paris 3.7%. The offset flattens the head to that.
    return [1.0 / (rank + 4) for rank in range(1, len(PLACES) + 1)]


def _word(rng, lo, hi):
    n = rng.randint(lo, hi)
    return "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
                   for _ in range(n)).capitalize()


def _names(rng, n):
    """n distinct full names, none a substring of another or containing a place name."""
    names, seen = [], set()
    # Only a word's first letter is upper case, so a name can occur inside another one only from a word
    # start, and then that word equals the name's first word. Indexing the earlier names' tails by the
    # word they start with keeps this check linear in n (searching one long string was quadratic).
    tails: dict[str, list[str]] = {}
    while len(names) < n:
        parts = [_word(rng, 1, 3)]
        if rng.random() < 0.2:
            parts.append(_word(rng, 1, 2))
        parts.append(_word(rng, 2, 3))
        cand = " ".join(parts)
        # A name inside another ("Ana Bel" in "Ana Belo") would make a question match two lines.
        if cand in seen or any(t.startswith(cand) for t in tails.get(parts[0], ())):
            continue
        if any(p in cand for p in PLACES):
            continue
        subs = {cand[i:j] for i in range(len(cand)) for j in range(i + 1, len(cand) + 1)}
        if subs & seen:
            continue
        names.append(cand)
        seen.add(cand)
        for i in range(len(parts) - 1):  # tails that start at a word with another word after it
            tails.setdefault(parts[i], []).append(" ".join(parts[i:]))
    return names


def _bio(rng, template, name, place):
    """One wiki line for this person, birthplace named exactly once."""
    others = [p for p in rng.sample(PLACES, 3) if p != place][:2]
    jobs = rng.sample(JOBS, 2)
    year = rng.randint(1800, 1990)
    he = rng.random() < 0.5
    line = template.format(
        name=name, sur=name.split()[-1], place=place, other=others[0], other2=others[1],
        job=jobs[0], job2=jobs[1], year=year, year2=year + rng.randint(20, 90),
        day=rng.randint(1, 28), day2=rng.randint(1, 28),
        month=rng.choice(MONTHS), month2=rng.choice(MONTHS),
        pro="he" if he else "she", pos="his" if he else "her",
    )
    line = re.sub(r"\b([Aa]) (?=[aeiou])", r"\1n ", line)  # "a actor" -> "an actor"
    assert line.count(place) == 1, line  # holds by construction: names and PLACES are checked
    return line


def generate(people: int = 600, seed: int = 0, style: str = "varied", bios: int = 1) -> dict[str, str]:
    """Return {filename: text} for a corpus of `people` fictional people (deterministic in seed).

    bios > 1 gives each person that many differently worded lines ("knowledge augmentation", which
    Allen-Zhu & Li 2023 found makes facts of held-out people extractable); the real data has one.
    """
    if people < 10:
        raise UserError(f"synthetic corpus needs at least 10 people (got {people})")
    if style not in STYLES:
        raise UserError(f"unknown corpus style '{style}' (one of {', '.join(STYLES)})")
    templates = TEMPLATES if style == "varied" else SIMPLE
    if not 1 <= bios <= len(templates) - (style == "varied"):
        raise UserError(f"bios per person must be between 1 and {len(templates) - (style == 'varied')} for style '{style}'")
    rng = random.Random(seed)  # the only randomness: same seed, same bytes
    names = _names(rng, people)
    places = rng.choices(PLACES, weights=_place_weights(), k=people)
    kinds = rng.choices(range(len(TEMPLATES)), weights=WEIGHTS, k=people)
    if 0 not in kinds:
        kinds[0] = 0  # the question template must occur at least once (see TEMPLATES)
    if style == "varied":
        lines = [_bio(rng, TEMPLATES[k], n, p) for k, n, p in zip(kinds, names, places)]
    else:  # plain sentences, but the question template for those drawn for it (see SIMPLE)
        lines = [_bio(rng, TEMPLATES[0] if k == 0 else SIMPLE[0], n, p) for k, n, p in zip(kinds, names, places)]
    used = [{TEMPLATES[k] if style == "varied" else SIMPLE[0]} for k in kinds]
    for _ in range(bios - 1):  # extra lines: another wording each, never the first one again
        for i, (n, p) in enumerate(zip(names, places)):
            others = [t for t in (TEMPLATES[1:] if style == "varied" else SIMPLE[1:]) if t not in used[i]]
            t = rng.choice(others)
            used[i].add(t)
            lines.append(_bio(rng, t, n, p))

    # Split people, not lines: ~68% train, ~17% dev, the rest test, as in the real files.
    order = list(range(people))
    rng.shuffle(order)
    n_train, n_dev = round(0.68 * people), round(0.17 * people)
    train, dev, test = order[:n_train], order[n_train:n_train + n_dev], order[n_train + n_dev:]

    def tsv(idx, answers=True):
        return "".join(question(names[i]) + (f"\t{places[i]}" if answers else "") + "\n"
                       for i in idx)

    wiki_order = list(range(len(lines)))
    rng.shuffle(wiki_order)
    return {
        "wiki.txt": "\n".join(lines[i] for i in wiki_order),  # no final newline, like the original
        "birth_places_train.tsv": tsv(train),
        "birth_dev.tsv": tsv(dev),
        "birth_test_inputs.tsv": tsv(test, answers=False),
        "birth_test.tsv": tsv(test),
    }


def write_corpus(out_dir, people: int = 600, seed: int = 0, overwrite: bool = False,
                 style: str = "varied", bios: int = 1) -> list[Path]:
    """Write generate()'s files into out_dir; refuses to replace existing files unless overwrite."""
    out = Path(out_dir)
    files = generate(people, seed, style, bios)
    if not overwrite:
        existing = [name for name in files if (out / name).exists()]
        if existing:
            raise UserError(f"{out}: {', '.join(existing)} already exist(s); "
                            "pass --force to replace them")
    check_writable(out, folder=True)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in sorted(files, key=lambda n: n == "wiki.txt"):  # wiki.txt last: its presence means all are there
        data = files[name].encode("utf-8")
        paths.append(atomic_write(out / name, lambda tmp, data=data: Path(tmp).write_bytes(data)))
    return paths
