"""End to end: on a small synthetic corpus, pretraining must put held-out people's birthplaces into the model.

The dev people never appear in the fine-tuning data, so whatever the fine-tuned model knows about them
came from span-corruption pretraining on wiki.txt. Measured at this size (README, "End-to-end test"):
pretraining cuts the dev answer loss to ~0.6x of no pretraining and the model completes most dev
biographies with the right place; exact match stays low at this scale (68 fine-tuning pairs), so we
assert the loss margin and report exact match.
"""
import pytest

from spangpt import checkpoint, stages
from spangpt.data import load_questions
from spangpt.evaluate import answer_loss
from spangpt.generate import greedy_batched
from spangpt.synth import write_corpus

pytestmark = pytest.mark.slow

MODEL = {"n_layer": 2, "n_head": 8, "n_embd": 128, "dropout": 0.0}
PRETRAIN = {"epochs": 200, "batch_size": 8, "lr": 3e-3, "schedule": "cosine", "device": "cpu", "progress": False}
FINETUNE = {"epochs": 10, "batch_size": 16, "lr": 1e-3, "schedule": "cosine", "device": "cpu", "progress": False}


def test_pretraining_puts_dev_birthplaces_into_the_model(tmp_path):
    data = tmp_path / "data"
    write_corpus(data, people=100, seed=0, style="simple")
    dev = load_questions(data / "birth_dev.tsv")
    pre, ft, scratch = (tmp_path / f"{n}.safetensors" for n in ("pre", "ft", "scratch"))
    stages.pretrain(data, pre, "vanilla", "demo", MODEL, PRETRAIN, quiet=True)
    stages.finetune(data, ft, "vanilla", pre, "demo", None, FINETUNE, quiet=True)
    stages.finetune(data, scratch, "vanilla", None, "demo", MODEL, FINETUNE, quiet=True)

    # 1. pretraining memorised the dev people's biographies: "NAME. NAME was born in " -> the place
    model, vocab, _ = checkpoint.load(pre)
    names = [q[len("Where was "):-len(" born?")] for q, _ in dev]
    outs = greedy_batched(model, [vocab.encode(f"{n}. {n} was born in ") for n in names], 24, stop_id=vocab.stoi["."])
    recalled = sum(vocab.decode(o).strip(" .") == a for o, (_, a) in zip(outs, dev))

    # 2. after fine-tuning on *other* people, the question form reaches that knowledge
    losses = {}
    for name, path in (("pretrained", ft), ("scratch", scratch)):
        m, v, _ = checkpoint.load(path)
        losses[name] = answer_loss(m, v, dev)
    _, (em_pre, n) = stages.evaluate(ft, data / "birth_dev.tsv", None, "cpu")
    _, (em_scratch, _) = stages.evaluate(scratch, data / "birth_dev.tsv", None, "cpu")
    print(f"\ndev biographies recalled after pretraining: {recalled}/{n}; dev answer loss: pretrained "
          f"{losses['pretrained']:.3f} vs scratch {losses['scratch']:.3f} nats/char; exact match {em_pre}/{n} vs {em_scratch}/{n}")
    assert recalled >= 0.5 * n
    assert losses["pretrained"] < 0.75 * losses["scratch"]
    assert em_pre >= em_scratch
