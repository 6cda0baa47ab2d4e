"""Facts about the original CS224N data (skipped, with the reason, when ../shared/data/cs224n is absent)."""
import random

from conftest import REAL_DATA, needs_real_data

from spangpt.corpus import head_length, name_in_question
from spangpt.data import finetune_example, load_corpus, load_questions, padded_strings, pretrain_example, read_text
from spangpt.evaluate import london_baseline
from spangpt.model import GPT, ModelConfig
from spangpt.vocab import MASK, PAD, Vocab

pytestmark = needs_real_data


def _vocab():
    return Vocab.from_text(read_text(REAL_DATA / "wiki.txt"))


def test_vocabulary_and_parameter_counts():
    v = _vocab()
    assert len(v) == 256
    assert GPT(ModelConfig(vocab_size=len(v), variant="vanilla")).num_params() == 3_323_392
    assert GPT(ModelConfig(vocab_size=len(v), variant="rope")).num_params() == 3_290_624


def test_first_finetuning_example_is_byte_for_byte_the_original():
    v = _vocab()
    q, a = load_questions(REAL_DATA / "birth_places_train.tsv")[0]
    x, y = padded_strings(*finetune_example(q, a, v, 128), v, 128)
    assert x == "Where was Khatchig Mouradian born?⁇Lebanon⁇" + PAD * (127 - 43)
    assert y == PAD * 33 + "⁇Lebanon⁇" + PAD * (127 - 33 - 9)


def test_every_pretraining_example_encodes_and_fits():
    v = _vocab()
    docs = load_corpus(REAL_DATA / "wiki.txt")
    assert len(docs) == 2937  # the original splits on '\n'; the file has no final newline
    rng = random.Random(0)
    for d in docs:
        x, y = pretrain_example(d, v, 128, rng)
        assert len(x) == len(y) <= 127 and v.decode(x).count(MASK) == 3


def test_london_baseline_is_five_percent():
    answers = [a for _, a in load_questions(REAL_DATA / "birth_dev.tsv")]
    assert london_baseline(answers) == (25, 500)


def test_every_wiki_line_starts_with_the_name_its_question_asks_about():
    """The name head that `focus`, `window` and `salient_mask` keep first is the QA files' name, line by line."""
    def asked(name, answers=True):  # "Where was NAME born?" -> NAME
        return {name_in_question(q) for q, _ in load_questions(REAL_DATA / name, need_answers=answers)}

    names = asked("birth_places_train.tsv") | asked("birth_dev.tsv") | asked("birth_test_inputs.tsv", answers=False)
    heads = [d[:head_length(d)] for d in load_corpus(REAL_DATA / "wiki.txt")]
    assert all(h.endswith(". ") for h in heads)
    assert sum(h[:-2] in names for h in heads) == 2937
