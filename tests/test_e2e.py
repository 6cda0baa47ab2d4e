"""End to end: pretraining is what answers questions about people the fine-tuning never saw.

A 130-person `simple` corpus ("NAME. NAME was born in PLACE .", one line each) split as the real files are:
88 people's birthplaces are the training QA pairs, and the 42 others (22 dev, 20 test) are held out, their
birthplace written only in wiki.txt. A RoPE model pretrained on wiki.txt and then fine-tuned on the pairs has
to answer the held-out people from what pretraining stored; a model fine-tuned without pretraining can only
guess, and so does always answering "London", the most common birthplace.

The recipe is tests/e2e.toml: the `demo` recipe's method (the training pairs mixed into every pretraining
epoch, weight decay 1.0 on every matrix, a linear decay to zero, fine-tuning at lr 1e-5) on a smaller model
(2 layers, 64 dims), with every biography example entity-centred (`focus = 1.0`: "NAME. born in⁇ .⁇PLACE⁇"),
150 epochs at lr 6e-3. Its comments say why each value.

Measured, held-out people answered of 42 (AMD EPYC, AVX2, fp32, 1 thread; 47-53 s per seed for the three
trainings and both evaluations, pretraining 45-50 s of it):

    training seed                      0    1    2    3    4
    pretrained, then fine-tuned       40   38   37   35   38
    pretrained, before fine-tuning    39   36   37   34   34
    no pretraining                     0    0    0    0    0
    always "London"                    3    3    3    3    3

The thresholds sit near half the worst seed (35 answers): fp32 is pinned, but another CPU's kernels round
differently and 150 epochs amplify that into another draw.

The held-out set pools dev and test so that 42 people are asked of a small corpus: the time grows with
people times epochs, and the answers need epochs more than people. At 250 people (42 in dev alone) on the
same model, the same minute of pretraining (90-100 epochs) answered 0-10 of 42 (with or without `focus`),
and 300 epochs with half the examples entity-centred 32 (3 minutes). Other corpus seeds agree: 36 of 42
for corpus seeds 1 and 2 (training seed 0). The demo's own size (500 people, 128 dims, the `demo` recipe;
docs/recipes.md, "The demo, three seeds") answers 62-67 of 85 dev people, its RoPE pretraining 11-22 minutes.
"""
from pathlib import Path

import pytest

from spangpt import stages
from spangpt.data import load_questions
from spangpt.evaluate import london_baseline
from spangpt.synth import write_corpus

pytestmark = pytest.mark.slow

PEOPLE = 130  # 88 fine-tuned on, 42 held out (dev and test)
RECIPE = str(Path(__file__).resolve().with_name("e2e.toml"))
CPU = {"device": "cpu", "precision": "fp32", "progress": False}


def test_pretraining_answers_questions_about_people_finetuning_never_saw(tmp_path):
    data = tmp_path / "data"
    write_corpus(data, people=PEOPLE, seed=0, style="simple")
    held_out = data / "held_out.tsv"  # people in no training pair: the dev and the test split
    held_out.write_text("".join((data / f).read_text(encoding="utf-8") for f in ("birth_dev.tsv", "birth_test.tsv")),
                        encoding="utf-8")
    questions = load_questions(held_out)
    train_names = {q for q, _ in load_questions(data / "birth_places_train.tsv")}
    assert len(questions) == 42
    assert not train_names & {q for q, _ in questions}  # the premise: no held-out person is fine-tuned on

    pre, ft, scratch = (tmp_path / f"{n}.safetensors" for n in ("pre", "ft", "scratch"))
    stages.pretrain(data, pre, "rope", RECIPE, None, CPU, quiet=True)
    stages.finetune(data, ft, "rope", pre, RECIPE, None, CPU, quiet=True)
    stages.finetune(data, scratch, "rope", None, RECIPE, None, CPU, quiet=True)
    _, (em_pre, n) = stages.evaluate(ft, held_out, None, "cpu")
    _, (em_scratch, _) = stages.evaluate(scratch, held_out, None, "cpu")
    london, _ = london_baseline([a for _, a in questions])
    print(f"\nheld-out exact match: pretrained {em_pre}/{n}, no pretraining {em_scratch}/{n}, "
          f"always London {london}/{n}")
    assert em_pre >= em_scratch + 0.4 * n  # 17 of 42 more; measured 35-40 against 0
    assert em_pre >= 6 * london  # 18 of 42; measured 35-40 against 3
