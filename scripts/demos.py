"""`make demos`: the long real-model demonstrations behind docs/results/, run with mlft's own recipes.

    python scripts/demos.py                       # demo, topic_en_to_all, ner_transfer (about 45 min on 2 cores)
    python scripts/demos.py --only ner_transfer   # one of them
    python scripts/demos.py --full                # also the full NER and sentiment defaults (hours on a CPU)

Each demonstration runs `mlft train experiment=<recipe>` (and `mlft eval`) in its own process under --workdir and
prints its numbers. The sentiment and pgd demonstrations (and the direct runs of pruning and the adaptations) reuse
a run the workdir already finished and continue one that was stopped from its newest checkpoint (`mlft train
resume=`), so the hour-long ones can be run over several sittings by repeating the command. The whole report
(date, machine, load average before and after, every command, every number) goes to --out, by default
docs/results/demos.md. `--model` and `--quick` (tiny data) check the plumbing with a small model; such a report
says so and is not a result.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUICK = ["data.max_train_samples=32", "data.max_dev_samples=8", "data.max_test_samples=16", "trainer.epochs=1"]


class Demos:
    def __init__(self, workdir: Path, model: str | None, quick: bool):
        self.workdir, self.model, self.quick = workdir, model, quick
        self.commands: list[str] = []

    def mlft(self, *args: str) -> None:
        command = [sys.executable, "-m", "mlft", *args]
        self.commands.append("mlft " + " ".join(shlex.quote(a) for a in args))
        print("$", self.commands[-1], flush=True)
        subprocess.run(command, check=True, cwd=ROOT)

    def train(self, name: str, *overrides: str, start: str | None = None) -> dict:
        """`start`: the model folder to start from (after --model, which only picks the architecture then)."""
        run = self.workdir / name
        extra = ([f"model={self.model}"] if self.model else []) + (QUICK if self.quick else [])
        extra += [f"model.name_or_path={start}"] if start else []
        self.mlft("train", *overrides, *extra, "trainer.progress=false", f"hydra.run.dir={run}", "overwrite=true")
        return json.loads((run / "metrics.json").read_text())

    def finished(self, name: str, *overrides: str, start: str | None = None) -> dict:
        """A run this workdir already holds (its command recorded as reused), one that was stopped continued from
        its newest checkpoint (`resume=`), else trained now: hour-long runs can span several sessions."""
        run = self.workdir / name
        metrics = run / "metrics.json"
        given = " ".join([*overrides, *([f"model.name_or_path={start}"] if start else [])])
        if metrics.is_file():
            self.commands.append(f"# reused {run}: mlft train {given}")
        elif (run / "config.yaml").is_file():
            self.commands.append(f"# continued {run}: mlft train {given}")
            self.mlft("train", f"resume={run}")
        else:
            return self.train(name, *overrides, start=start)
        return json.loads(metrics.read_text())

    def evaluate(self, name: str, *args: str) -> dict:
        return self.evaluate_into(f"{name}-eval", f"run={self.workdir / name}", *args)

    def evaluate_into(self, out_name: str, *args: str) -> dict:
        """`mlft eval` into a workdir folder, replacing what an earlier call left there (eval never overwrites)."""
        out = self.workdir / out_name
        shutil.rmtree(out, ignore_errors=True)
        self.mlft("eval", *args, f"out={out}")
        return json.loads((out / "metrics.json").read_text())


def demo(d: Demos) -> list[str]:
    m = d.train("demo", "experiment=demo")
    test, seconds = m["test"]["zh"], m["throughput"]["train_seconds"]
    return [f"test F1 {test['f1']:.4f} on {test['n']} sentences; {seconds:.0f} s of training"]


def topic_en_to_all(d: Demos) -> list[str]:
    m = d.train("topic", "experiment=topic_en_to_all")
    targets = {lang: v for lang, v in m["test"].items() if lang != "en" and v["n"] >= 20}
    mean = sum(v["accuracy"] for v in targets.values()) / max(len(targets), 1)
    per_lang = ", ".join(f"{lang} {v['accuracy']:.2f}" for lang, v in targets.items())
    return [
        f"English test accuracy {m['test']['en']['accuracy']:.4f}",
        f"zero-shot accuracy, mean over the {len(targets)} languages with ≥20 test utterances: {mean:.4f}",
        f"per language: {per_lang}",
    ]


def ner_transfer(d: Demos) -> list[str]:
    zh = d.train("ner-zh", "experiment=ner_zh_to_en")
    en = d.train("ner-en", "experiment=ner_en_to_zh")
    pd98 = d.train("ner-pd98", "experiment=ner_pd98")
    on_pd98 = d.evaluate("ner-zh", "lang=[zh]", "split=[test]", "test=builtin:pd98")["test"]["zh"]["f1"]
    on_msra = d.evaluate("ner-pd98", "lang=[zh]", "split=[test]", "test=builtin:msra")["test"]["zh"]["f1"]
    msra, wnut = zh["test"]["zh"]["f1"], zh["test"]["en"]["f1"]
    return [
        f"MSRA -> MSRA {msra:.4f}, -> WNUT-16 (zero-shot) {wnut:.4f}, -> pd98 {on_pd98:.4f}",
        f"WNUT-16 -> WNUT-16 {en['test']['en']['f1']:.4f}, -> MSRA (zero-shot) {en['test']['zh']['f1']:.4f}",
        f"pd98 -> pd98 {pd98['test']['zh']['f1']:.4f}, -> MSRA {on_msra:.4f}",
    ]


def ner_full(d: Demos) -> list[str]:
    m = d.train("ner-full", "experiment=ner_full")
    return [f"test F1 {m['test']['zh']['f1']:.4f}, dev F1 {m['dev']['zh']['f1']:.4f}"]


def sentiment_full(d: Demos) -> list[str]:
    m = d.train("sentiment-full", "experiment=sentiment_full")
    return [f"test accuracy {m['test']['zh']['accuracy']:.4f}, dev accuracy {m['dev']['zh']['accuracy']:.4f}"]


SENTIMENT_SEEDS = (1, 2, 3)
RESUMABLE = ["trainer.save_steps=200", "trainer.keep_last=1"]
"""A checkpoint every 200 steps (~6 minutes on the CPU) so that an hour-long run stopped midway continues."""


def sentiment_seed(d: Demos, seed: int, name: str = "sentiment-full", start: str | None = None) -> dict:
    return d.finished(f"{name}-seed{seed}", "experiment=sentiment_full", f"seed={seed}", *RESUMABLE, start=start)


def sentiment_ensemble(d: Demos) -> list[str]:
    """The sentiment full default (chnsenti, 3 epochs) with seeds 1, 2 and 3, and the three runs as one ensemble
    (probabilities averaged); about an hour a run on the 2-core CPU, continued across sessions."""
    singles = [sentiment_seed(d, seed) for seed in SENTIMENT_SEEDS]
    runs = [d.workdir / f"sentiment-full-seed{seed}" for seed in SENTIMENT_SEEDS]
    both = d.evaluate_into("sentiment-ensemble-eval", f"runs=[{','.join(map(str, runs))}]", "split=[dev,test]")
    accuracy = [m["test"]["zh"]["accuracy"] for m in singles]
    return [
        "single runs, test accuracy: "
        + ", ".join(f"seed {s} {x:.4f}" for s, x in zip(SENTIMENT_SEEDS, accuracy))
        + f" (mean {sum(accuracy) / len(accuracy):.4f})",
        f"ensemble of the {len(runs)} runs: test accuracy {both['test']['zh']['accuracy']:.4f}, "
        f"dev {both['dev']['zh']['accuracy']:.4f}",
    ]


SENTIMENT_TEXT = [
    "task=mlm",
    "lang=zh",
    "task.datasets.zh=builtin:chnsenti",
    "data.max_dev_samples=200",
    "data.max_test_samples=200",
]
"""Masked-LM on the text of chnsenti's own training reviews (labels unused), held-out text from its dev split."""


def sentiment_adaptation(d: Demos) -> list[str]:
    """The sentiment full default from the plain encoder (the ensemble's runs, reused) and from the encoder adapted
    by masked-LM on chnsenti's training text, head first as in adaptation_head_first; seeds 1 and 2."""
    head = d.finished("mlm-chnsenti-head", *SENTIMENT_TEXT, *head_first(d), "trainer.epochs=1")
    mlm = d.finished(
        "mlm-chnsenti",
        *SENTIMENT_TEXT,
        "model.freeze_embeddings=true",
        "optimizer.lr=5e-5",
        "trainer.epochs=1",
        *RESUMABLE,
        start=f"{d.workdir}/mlm-chnsenti-head/model",
    )
    minutes = (head["throughput"]["train_seconds"] + mlm["throughput"]["train_seconds"]) / 60
    lines = [
        f"masked-LM on chnsenti training text: dev loss {head['before']['dev']['zh']['loss']:.2f} -> "
        f"{head['dev']['zh']['loss']:.2f} (head alone) -> {mlm['dev']['zh']['loss']:.2f}, masked-token accuracy "
        f"{mlm['dev']['zh']['accuracy']:.3f}; {minutes:.1f} min of training"
    ]
    for seed in SENTIMENT_SEEDS[:2]:
        plain = sentiment_seed(d, seed)
        adapted = sentiment_seed(d, seed, "sentiment-adapted", start=f"{d.workdir}/mlm-chnsenti/model")
        lines.append(
            f"seed {seed}: test accuracy {plain['test']['zh']['accuracy']:.4f} direct, "
            f"{adapted['test']['zh']['accuracy']:.4f} after adaptation"
        )
    return lines


ADAPTATION = [
    "task=mlm",
    "lang=zh",
    "data.max_train_samples=4000",
    "data.max_train_length=100",
    "data.max_dev_samples=200",
    "data.max_test_samples=200",
    "model.freeze_embeddings=true",
    "trainer.epochs=1",
]


def adaptation(d: Demos) -> list[str]:
    """The demo recipe (MSRA NER) from the plain encoder and from the encoder adapted by masked-LM on 4,000 of
    MSRA's training sentences (their text only), seeds 1 and 2: the same fine-tuning budget either way."""
    mlm = d.train("mlm-msra", *ADAPTATION)
    lines = [
        f"masked-LM on MSRA training text: dev loss {mlm['before']['dev']['zh']['loss']:.2f} -> "
        f"{mlm['dev']['zh']['loss']:.2f}, masked-token accuracy {mlm['before']['dev']['zh']['accuracy']:.3f} -> "
        f"{mlm['dev']['zh']['accuracy']:.3f}; {mlm['throughput']['train_seconds'] / 60:.1f} min of training"
    ]
    for seed in (1, 2):
        plain = d.finished(f"demo-seed{seed}", "experiment=demo", f"seed={seed}")
        adapted = d.train(
            f"demo-adapted-seed{seed}", "experiment=demo", f"seed={seed}", start=f"{d.workdir}/mlm-msra/model"
        )
        lines.append(
            f"seed {seed}: test F1 {plain['test']['zh']['f1']:.4f} direct, {adapted['test']['zh']['f1']:.4f} after "
            f"adaptation ({plain['throughput']['train_seconds'] / 60:.1f} and "
            f"{adapted['throughput']['train_seconds'] / 60:.1f} min of fine-tuning)"
        )
    return lines


HEAD_FIRST = ["model.freeze_layers=12", "optimizer.head_lr=1e-3"]
"""Fits the masked-LM head alone (all 12 layers of multilingual-e5-small frozen): the offline image has no head,
and a random one sends noise into the encoder's top layers when both train from the start."""


def head_first(d: Demos) -> list[str]:
    return [x.replace("=12", "=2") for x in HEAD_FIRST] if d.quick else HEAD_FIRST  # tiny 2-layer models


def adaptation_head_first(d: Demos) -> list[str]:
    """The adaptation above in two steps: the masked-LM head alone first, then the encoder with a smaller learning
    rate from there; then the demo recipe from the adapted encoder, seeds 1 and 2 (the direct runs are reused)."""
    head = d.train("mlm-msra-head", *ADAPTATION, *head_first(d))
    mlm = d.train("mlm-msra-after-head", *ADAPTATION, "optimizer.lr=5e-5", start=f"{d.workdir}/mlm-msra-head/model")
    lines = [
        f"head alone: dev loss {head['before']['dev']['zh']['loss']:.2f} -> {head['dev']['zh']['loss']:.2f}, "
        f"masked-token accuracy {head['dev']['zh']['accuracy']:.3f}; "
        f"{head['throughput']['train_seconds'] / 60:.1f} min of training",
        f"then the encoder (lr 5e-5): dev loss {mlm['before']['dev']['zh']['loss']:.2f} -> "
        f"{mlm['dev']['zh']['loss']:.2f}, masked-token accuracy {mlm['dev']['zh']['accuracy']:.3f}; "
        f"{mlm['throughput']['train_seconds'] / 60:.1f} min of training",
    ]
    for seed in (1, 2):
        plain = d.finished(f"demo-seed{seed}", "experiment=demo", f"seed={seed}")
        adapted = d.train(
            f"demo-head-first-seed{seed}",
            "experiment=demo",
            f"seed={seed}",
            start=f"{d.workdir}/mlm-msra-after-head/model",
        )
        lines.append(
            f"seed {seed}: test F1 {plain['test']['zh']['f1']:.4f} direct, {adapted['test']['zh']['f1']:.4f} after "
            f"head-first adaptation ({adapted['throughput']['train_seconds'] / 60:.1f} min of fine-tuning)"
        )
    return lines


LANGUAGE_TEXT = {
    "en": ["data.max_train_length=100", "trainer.epochs=2"],
    "zh": ["data.max_train_samples=8000", "data.max_train_length=100", "trainer.epochs=1"],
}
"""A language's masked-LM text: all 1,915 WNUT-16 training tweets of at most 100 characters twice (240 steps), or
8,000 MSRA training sentences once (500 steps); held-out loss on 200 dev texts."""


def language_adapter_run(d: Demos, lang: str) -> tuple[dict, dict]:
    """A language adapter on the frozen encoder, over a masked-LM head fitted first on the same text: the offline
    image has no head, and a random one would leave the adapter learning to serve it."""
    text = ["task=mlm", f"lang={lang}", *LANGUAGE_TEXT[lang], "data.max_dev_samples=200", "data.max_test_samples=200"]
    head = d.finished(f"mlm-head-{lang}", *text, "model.freeze_embeddings=true", *head_first(d))
    adapter = d.finished(
        f"lang-adapter-{lang}", *text, "peft=lang_adapter", start=f"{d.workdir}/mlm-head-{lang}/model"
    )
    return head, adapter


ALL_LINEAR_16 = ["peft=task_adapter", "peft.r=16", "peft.target_modules=[all-linear]"]

TASK_ADAPTERS = {
    "lora": (["peft=task_adapter"], (1, 2, 3, 4, 5)),
    "lora-all-1e-3": ([*ALL_LINEAR_16, "peft.lr=1e-3"], (1, 2, 3)),
    "lora-all-5e-4": ([*ALL_LINEAR_16, "peft.lr=5e-4"], (1, 2, 3)),
}
"""The MAD-X task adapters compared, with their seeds: the preset (rank 8 on query/value), and rank 16 on every
linear layer (peft=lora_all's adapter, the LoRA that matches full fine-tuning on MSRA) at its learning rate and at
half of it."""


def madx(d: Demos) -> list[str]:
    """Zero-shot NER English -> Chinese (WNUT-16 -> MSRA) with a LoRA task adapter: alone, and trained over the
    English language adapter with MSRA scored without a language adapter, over the English one, or over the Chinese
    one (MAD-X); TASK_ADAPTERS, several seeds; runs the workdir holds are reused."""
    lines = []
    for lang in ("en", "zh"):
        head, m = language_adapter_run(d, lang)
        before, fitted, after = head["before"]["dev"][lang], m["before"]["dev"][lang], m["dev"][lang]
        lines.append(
            f"{lang} masked-LM ({m['throughput']['train_samples']:,} texts seen): dev loss "
            f"{before['loss']:.2f} (random head) -> {fitted['loss']:.2f} (head fitted, "
            f"{head['throughput']['train_seconds'] / 60:.1f} min) -> {after['loss']:.2f} (language adapter, "
            f"{m['throughput']['train_seconds'] / 60:.1f} min); masked-token accuracy {fitted['accuracy']:.3f} -> "
            f"{after['accuracy']:.3f}"
        )
    en, zh = d.workdir / "lang-adapter-en", d.workdir / "lang-adapter-zh"
    variants = {  # how MSRA is scored: without a language adapter, over the English one, over its own (MAD-X)
        "en-adapter": f"peft.lang_adapters={{en: {en}}}",
        "en-adapter-everywhere": f"peft.lang_adapters={{en: {en}, zh: {en}}}",
        "madx": f"peft.lang_adapters={{en: {en}, zh: {zh}}}",
    }
    for name, (task_adapter, seeds) in TASK_ADAPTERS.items():
        for seed in seeds:
            recipe = ["experiment=ner_en_to_zh", *task_adapter, f"seed={seed}"]
            plain = d.finished(f"en-to-zh-{name}-seed{seed}", *recipe)
            runs = {v: d.finished(f"en-to-zh-{name}-{v}-seed{seed}", *recipe, a) for v, a in variants.items()}
            zh_f1 = {v: m["test"]["zh"]["f1"] for v, m in runs.items()}
            lines.append(
                f"{name} task adapter, seed {seed}: MSRA test F1 (zero-shot) {plain['test']['zh']['f1']:.4f} alone; "
                f"trained over the en adapter, MSRA scored without a language adapter {zh_f1['en-adapter']:.4f}, "
                f"over the en adapter {zh_f1['en-adapter-everywhere']:.4f}, over the zh adapter {zh_f1['madx']:.4f}; "
                f"WNUT-16 test F1 {plain['test']['en']['f1']:.4f} alone, {runs['madx']['test']['en']['f1']:.4f} over "
                "the en adapter"
            )
    return lines


def ensemble(d: Demos) -> list[str]:
    """The demo recipe (MSRA NER) with seeds 1, 2 and 3, and the three runs as one ensemble (probabilities
    averaged per token before Viterbi decoding)."""
    runs = [d.workdir / f"demo-seed{seed}" for seed in (1, 2, 3)]
    singles = [d.train(run.name, "experiment=demo", f"seed={seed}") for seed, run in zip((1, 2, 3), runs)]
    both = d.evaluate_into("demo-ensemble-eval", f"runs=[{','.join(map(str, runs))}]", "split=[test]")["test"]["zh"]
    f1 = [m["test"]["zh"]["f1"] for m in singles]
    return [
        "single runs, test F1: "
        + ", ".join(f"seed {s} {x:.4f}" for s, x in zip((1, 2, 3), f1))
        + f" (mean {sum(f1) / 3:.4f})",
        f"ensemble of the 3 runs, test F1 {both['f1']:.4f} (P {both['precision']:.4f}, R {both['recall']:.4f})",
    ]


SMALL_MSRA = ["experiment=demo", "data.max_train_samples=2000", "trainer.epochs=2", "trainer.max_steps=250"]
"""The demo recipe on 2,000 MSRA training sentences: 2 epochs of 125 optimizer steps of 16; an augmented run stops
at the same 250 steps (the same budget)."""


def augmentation(d: Demos) -> list[str]:
    """Mention replacement on 2,000 MSRA sentences against the same recipe without it, with the same budget (250
    optimizer steps: the augmented run sees each of its ~2x examples fewer times), seeds 1 and 2."""
    lines = []
    for seed in (1, 2):
        plain = d.train(f"msra2k-seed{seed}", *SMALL_MSRA, f"seed={seed}")
        mentions = d.train(
            f"msra2k-mentions-seed{seed}", *SMALL_MSRA, f"seed={seed}", "data.augment.mention_replacement=0.5"
        )
        added = mentions["augmentation"]["added"]["mention_replacement"]
        lines.append(
            f"seed {seed}: test F1 {plain['test']['zh']['f1']:.4f} plain, {mentions['test']['zh']['f1']:.4f} with "
            f"mention replacement (+{added:,} sentences; {plain['throughput']['train_seconds'] / 60:.1f} and "
            f"{mentions['throughput']['train_seconds'] / 60:.1f} min of training)"
        )
    return lines


def code_switching(d: Demos) -> list[str]:
    """Zero-shot NER English -> Chinese (WNUT-16 -> MSRA, experiment=ner_en_to_zh) with 30% of the English words
    that CC-CEDICT translates code-switched into Chinese, against the same recipe without, seeds 1 and 2."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import cedict_dictionary

    dictionary = cedict_dictionary.main(["--out", str(d.workdir / "en_zh_cedict.tsv")])
    lines = []
    for seed in (1, 2):
        plain = d.train(f"en-to-zh-seed{seed}", "experiment=ner_en_to_zh", f"seed={seed}")
        switched = d.train(
            f"en-to-zh-cs-seed{seed}", "experiment=ner_en_to_zh", f"seed={seed}", "data.augment.code_switch=0.3",
            f"data.augment.dictionary={dictionary}",
        )  # fmt: skip
        added = switched["augmentation"]["added"]["code_switch"]
        # The code-switched run has about twice the steps (same epochs, twice the sentences): the plain recipe
        # with that many steps separates the budget from the method.
        steps = math.ceil(switched["throughput"]["train_samples"] / 16)  # batches of 16: 305 for 973 x 5
        budget = d.train(
            f"en-to-zh-{steps}-seed{seed}", "experiment=ner_en_to_zh", f"seed={seed}", f"trainer.max_steps={steps}",
            "trainer.epochs=10",
        )  # fmt: skip
        lines.append(
            f"seed {seed}: MSRA test F1 (zero-shot) {plain['test']['zh']['f1']:.4f} plain, "
            f"{budget['test']['zh']['f1']:.4f} plain with {steps} steps, "
            f"{switched['test']['zh']['f1']:.4f} code-switched (+{added:,} sentences); WNUT-16 test F1 "
            f"{plain['test']['en']['f1']:.4f}, {budget['test']['en']['f1']:.4f} and {switched['test']['en']['f1']:.4f}"
        )
    return lines


DEMOS: dict[str, Callable[[Demos], list[str]]] = {
    "demo": demo,
    "topic_en_to_all": topic_en_to_all,
    "ner_transfer": ner_transfer,
}
REGULARISERS = {
    "plain": [],
    "pgd": ["trainer.adversarial=pgd"],
    "rdrop": ["trainer.rdrop=1.0"],
    "label_smoothing": ["task.label_smoothing=0.1"],
}
"""PGD (3 steps of 0.3 within 1.0), R-Drop (alpha 1) and label smoothing (0.1) on the SMALL_MSRA recipe."""


def regularisers(d: Demos, seeds: tuple[int, ...] = (1, 2)) -> list[str]:
    """PGD, R-Drop and label smoothing against the plain recipe on 2,000 MSRA sentences, same 250 steps."""
    lines = []
    for seed in seeds:
        for variant, extra in REGULARISERS.items():
            m = d.train(f"msra2k-{variant}-seed{seed}", *SMALL_MSRA, *extra, f"seed={seed}")
            minutes = m["throughput"]["train_seconds"] / 60
            lines.append(
                f"seed {seed}, {variant}: test F1 {m['test']['zh']['f1']:.4f} ({minutes:.1f} min of training)"
            )
    return lines


PGD_VARIANTS = {
    "pgd": ["trainer.adversarial=pgd"],
    "pgd_small": ["trainer.adversarial=pgd", "trainer.adv_epsilon=0.3", "trainer.adv_alpha=0.1"],
}
"""PGD at its defaults (3 steps of 0.3 within 1.0) and a third of that (3 steps of 0.1 within 0.3)."""


def pgd(d: Demos) -> list[str]:
    """PGD at two strengths against the plain SMALL_MSRA recipe (the augmentation demonstration's runs, reused),
    seeds 1 and 2, the same 250 steps."""
    lines = []
    for seed in (1, 2):
        plain = d.finished(f"msra2k-seed{seed}", *SMALL_MSRA, f"seed={seed}")
        scores = [f"plain {plain['test']['zh']['f1']:.4f}"]
        for variant, extra in PGD_VARIANTS.items():
            m = d.finished(f"msra2k-{variant}-seed{seed}", *SMALL_MSRA, *extra, f"seed={seed}")
            scores.append(
                f"{variant} {m['test']['zh']['f1']:.4f} ({m['throughput']['train_seconds'] / 60:.1f} min of training)"
            )
        lines.append(f"seed {seed}, test F1: " + ", ".join(scores))
    return lines


ZH_THEN_EN = [
    "experiment=demo",
    "task=ner_shared",
    "data.max_train_samples=2000",
    "data.max_test_samples=1000",
    "trainer.epochs=2",
    "trainer.max_steps=250",
    "trainer.stages=[{name: msra, lang: zh}, {name: wnut16, lang: en, trainer: {epochs: 5}}]",
]
"""Continual NER, Chinese then English: the demo recipe on 2,000 MSRA sentences (250 steps), then WNUT-16 mapped
onto PER/LOC/ORG (5 epochs, at most 250 steps: about the same budget); every stage at most 250 steps, so replayed
examples do not buy more steps."""
CONTINUAL_VARIANTS = {
    "sequential": [],
    "replay": ["trainer.continual.replay=0.2"],
    "ewc": ["trainer.continual.regulariser=ewc", "trainer.continual.strength=0.02"],
}


def continual(d: Demos) -> list[str]:
    """MSRA then WNUT-16 (zh -> en): plain sequential training against replaying 20% of MSRA and EWC, seeds 1 and
    2; the forgetting matrix of each."""
    lines = []
    for seed in (1, 2):
        for variant, extra in CONTINUAL_VARIANTS.items():
            m = d.train(f"zh_en-{variant}-seed{seed}", *ZH_THEN_EN, *extra, f"seed={seed}")["continual"]
            after = m["after"]
            lines.append(
                f"seed {seed}, {variant}: MSRA F1 {after['msra']['msra']['score']:.4f} after MSRA -> "
                f"{after['wnut16']['msra']['score']:.4f} after WNUT-16; "
                f"WNUT-16 F1 {after['wnut16']['wnut16']['score']:.4f}; "
                f"average {m['average']:.4f}, backward transfer {m['backward_transfer']:+.4f}"
            )
    return lines


PRUNING_VARIANTS = {
    "unpruned": [],
    "heads30-neurons30": ["prune.heads=0.3", "prune.neurons=0.3"],
    "heads50-neurons50": ["prune.heads=0.5", "prune.neurons=0.5"],
    "6-layers": ["model.num_layers=6"],
}
"""Each from the demo model, one more epoch of the demo recipe: unpruned (the same budget without pruning), two
pruning levels, and the 6-layer cut of the same model (the depth students start from) for comparison."""


def pruning(d: Demos) -> list[str]:
    """Structured pruning of the demo model (MSRA NER, seed 1): heads and neurons scored on 32 training batches,
    removed, then one epoch of the demo recipe; against the same epoch unpruned and a 6-layer cut."""
    d.finished("demo-seed1", "experiment=demo", "seed=1")
    base = d.workdir / "demo-seed1" / "model"
    lines = []
    for variant, extra in PRUNING_VARIANTS.items():
        if d.quick:  # the plumbing check's tiny models have fewer than 6 layers
            extra = [x.replace("num_layers=6", "num_layers=2") for x in extra]
        m = d.train(
            f"prune-{variant}",
            "experiment=demo",
            "seed=1",
            "trainer.eval_before=true",
            *extra,
            start=str(base),
        )
        before = m.get("before", {}).get("test", {}).get("zh", {}).get("f1")
        record = m.get("pruning", {})
        params, blocks = record.get("parameters", {}), record.get("block_parameters", {})
        size = (
            f"{blocks['after']:,} of {blocks['before']:,} parameters in the layers ({params['after']:,} of "
            f"{params['before']:,} in all), "
            if params
            else ""
        )
        start = f"test F1 {before:.4f} before the epoch, " if before is not None else ""
        lines.append(
            f"{variant}: {size}{start}test F1 {m['test']['zh']['f1']:.4f}; "
            f"{m['throughput']['train_seconds'] / 60:.1f} min of training"
        )
    return lines


FULL: dict[str, Callable[[Demos], list[str]]] = {
    "adaptation": adaptation,
    "adaptation_head_first": adaptation_head_first,
    "augmentation": augmentation,
    "code_switching": code_switching,
    "continual": continual,
    "ensemble": ensemble,
    "madx": madx,
    "pgd": pgd,
    "pruning": pruning,
    "regularisers": regularisers,
    "ner_full": ner_full,
    "sentiment_full": sentiment_full,
    "sentiment_ensemble": sentiment_ensemble,
    "sentiment_adaptation": sentiment_adaptation,
}


def machine() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.platform()}, {os.cpu_count()} CPUs, {gpu}, torch {torch.__version__}"


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help=f"comma-separated, of {', '.join([*DEMOS, *FULL])}")
    parser.add_argument("--full", action="store_true", help="also the full defaults (hours on a CPU)")
    parser.add_argument("--workdir", default="runs/demos")
    parser.add_argument("--out", default=str(ROOT / "docs" / "results" / "demos.md"))
    parser.add_argument("--model", help="another model (a preset or folder): checks the plumbing, not a result")
    parser.add_argument("--quick", action="store_true", help="tiny data: checks the plumbing, not a result")
    args = parser.parse_args(argv)
    chosen = {**DEMOS, **(FULL if args.full else {})}
    if args.only:
        names = args.only.split(",")
        unknown = [n for n in names if n not in {**DEMOS, **FULL}]
        if unknown:
            parser.error(f"unknown demonstration(s) {unknown} (allowed: {', '.join([*DEMOS, *FULL])})")
        chosen = {n: {**DEMOS, **FULL}[n] for n in names}
    demos = Demos(Path(args.workdir).resolve(), args.model, args.quick)
    started = datetime.datetime.now()
    load = os.getloadavg()
    sections = []
    for name, run in chosen.items():
        demos.commands = []
        begin = datetime.datetime.now()
        lines = run(demos)
        minutes = (datetime.datetime.now() - begin).total_seconds() / 60
        sections += [
            f"## {name} ({minutes:.1f} min)",
            "",
            "```bash",
            *demos.commands,
            "```",
            "",
            *(f"- {x}" for x in lines),
            "",
        ]
        print("\n".join(lines), flush=True)
    title = "Demonstrations (`make demos`, scripts/demos.py)"
    return write_report(Path(args.out), title, started, load, bool(args.model or args.quick), [], sections)


def write_report(
    out: Path,
    title: str,
    started: datetime.datetime,
    load: tuple[float, float, float],
    plumbing: bool,
    notes: list[str],
    sections: list[str],
) -> Path:
    """A results file: title, date, machine, load average before and after (what else ran beside), sections."""
    header = [
        f"# {title}",
        "",
        f"- date: {started:%Y-%m-%d %H:%M}; machine: {machine()}",
        f"- load average before: {load[0]:.2f}, after: {os.getloadavg()[0]:.2f} (what else ran beside)",
        *(f"- {note}" for note in notes),
    ]
    if plumbing:
        header.append("- a plumbing check (--model / --quick), not a result")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join([*header, "", *sections]))
    print(f"written to {out}")
    return out


if __name__ == "__main__":
    main()
