"""Bad input, end to end through `mlft`: a message naming file:line (data) or the key (config), exit code 2,
no traceback, and nothing the user had is changed.

Each case writes its files into a fresh directory, runs the real CLI in-process and checks all four.
`{d}` in arguments is that directory and `{model}` a tiny model.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from conftest import FIXTURES
from helpers import cli_error, snapshot

ZH_TRAIN = (FIXTURES / "zh_ner" / "train.conll").read_bytes()
SENT_TRAIN = (FIXTURES / "sentiment" / "zh_train.jsonl").read_bytes()
NER = ["train", "task=ner", "lang=zh", "model={model}", "hydra.run.dir={d}/run", "trainer.progress=false"]
NER_FILE = [*NER, "data.train={d}/train.conll"]
SENT = ["train", "task=sentiment", "lang=zh", "model={model}", "hydra.run.dir={d}/run", "trainer.progress=false"]
SENT_FILE = [*SENT, "data.train={d}/train.jsonl"]
CSV = [*SENT, "data.train={d}/train.csv"]
OTHER_MODEL = [*NER_FILE[:3], "model={d}/other", *NER_FILE[4:]]
GOOD_NER = {"train.conll": ZH_TRAIN}
GOOD_SENT = {"train.jsonl": SENT_TRAIN}


def jsonl(*lines: str) -> bytes:
    return "".join(line + "\n" for line in lines).encode()


SURROGATE = jsonl('{"text": "好", "label": "pos"}', '{"text": "a\\ud800b", "label": "neg"}')


# (id, files, argv, pattern the message must match)
CASES: list[tuple[str, dict[str, bytes], list[str], str]] = [
    # CoNLL token files
    ("conll-missing-tag", {"train.conll": b"a\tB-PER\nb\n"}, NER_FILE, r"train\.conll:2: .*token and a tag"),
    ("conll-empty-file", {"train.conll": b""}, NER_FILE, r"train\.conll:1: file is empty"),
    ("conll-only-blank-lines", {"train.conll": b"\n\n\r\n"}, NER_FILE, r"train\.conll:1: .*empty"),
    ("conll-docstart-only", {"train.conll": b"-DOCSTART- -X- O O\n\n"}, NER_FILE, r"train\.conll:1: no sentences"),
    ("conll-non-utf8", {"train.conll": b"a\tO\n\xff\xfe\tO\n"}, NER_FILE, r"train\.conll:2: .*UTF-8"),
    ("conll-i-after-o", {"train.conll": b"a\tO\nb\tI-PER\n"}, NER_FILE, r"train\.conll:2: .*data\.repair=true"),
    ("conll-type-switch", {"train.conll": b"a\tB-LOC\nb\tI-PER\n"}, NER_FILE, r"train\.conll:2: .*I-PER"),
    ("conll-unknown-prefix", {"train.conll": b"a\tX-PER\n"}, NER_FILE, r"train\.conll:1: .*X-PER"),
    ("bmes-m-after-o", {"train.conll": b"a\tO\nb\tM-PER\nc\tE-PER\n"}, [*NER_FILE, "data.scheme=BMES"], r":2: "),
    ("bmes-open-entity", {"train.conll": b"a\tB-PER\n\nb\tO\n"}, [*NER_FILE, "data.scheme=BMES"], r":1: .*PER"),
    ("iobes-unclosed", {"train.conll": b"a\tB-LOC\nb\tO\n"}, [*NER_FILE, "data.scheme=IOBES"], r":2: .*not closed"),
    (
        "conll-label-only-in-dev",
        {**GOOD_NER, "dev.conll": b"a\tB-MISC\n"},
        [*NER_FILE, "data.dev={d}/dev.conll"],
        r"dev\.conll:1: .*B-MISC",
    ),
    (
        "conll-label-only-in-test",
        {**GOOD_NER, "test.conll": b"a\tO\n\nb\tB-FAC\n"},
        [*NER_FILE, "data.test={d}/test.conll"],
        r"test\.conll:3: .*B-FAC",
    ),
    (
        "conll-for-classification",
        {"train.conll": ZH_TRAIN},
        [*SENT, "data.train={d}/train.conll"],
        r"train\.conll:1: .*CoNLL",
    ),
    # JSONL
    (
        "jsonl-invalid-json",
        {"train.jsonl": jsonl('{"text": "a", "label": "pos"}', "{bad")},
        SENT_FILE,
        r":2: not valid JSON",
    ),
    ("jsonl-array-record", {"train.jsonl": jsonl("[1, 2]")}, SENT_FILE, r"train\.jsonl:1: expected a JSON object"),
    ("jsonl-string-record", {"train.jsonl": jsonl('"text"')}, SENT_FILE, r"train\.jsonl:1: expected a JSON object"),
    (
        "jsonl-missing-text",
        {"train.jsonl": jsonl('{"label": "pos"}')},
        SENT_FILE,
        r":1: missing column 'text'",
    ),
    ("jsonl-missing-label", {"train.jsonl": jsonl('{"text": "好"}')}, SENT_FILE, r"train\.jsonl:1: .*'label'"),
    ("jsonl-text-number", {"train.jsonl": jsonl('{"text": 5, "label": "pos"}')}, SENT_FILE, r":1: 'text' must be"),
    ("jsonl-text-empty", {"train.jsonl": jsonl('{"text": "", "label": "pos"}')}, SENT_FILE, r":1: 'text' must be"),
    ("jsonl-text-null", {"train.jsonl": jsonl('{"text": null, "label": "pos"}')}, SENT_FILE, r":1: 'text' must be"),
    (
        "jsonl-label-dict",
        {"train.jsonl": jsonl('{"text": "好", "label": {"a": 1}}')},
        SENT_FILE,
        r"train\.jsonl:1: .*label",
    ),
    ("jsonl-empty-file", {"train.jsonl": b""}, SENT_FILE, r"train\.jsonl:1: file is empty"),
    (
        "jsonl-ner-count-mismatch",
        {"train.jsonl": jsonl('{"tokens": ["李", "娜"], "tags": ["B-PER"]}')},
        [*NER, "data.train={d}/train.jsonl"],
        r"train\.jsonl:1: 2 tokens but 1 tags",
    ),
    (
        "jsonl-ner-tokens-string",
        {"train.jsonl": jsonl('{"tokens": "李娜", "tags": ["B-PER", "I-PER"]}')},
        [*NER, "data.train={d}/train.jsonl"],
        r"train\.jsonl:1: .*lists of strings",
    ),
    (
        "jsonl-ner-empty-sentence",
        {"train.jsonl": jsonl('{"tokens": [], "tags": []}')},
        [*NER, "data.train={d}/train.jsonl"],
        r"train\.jsonl:1: empty sentence",
    ),
    (
        "jsonl-label-only-in-test",
        {**GOOD_SENT, "test.jsonl": jsonl('{"text": "一般", "label": "neutral"}')},
        [*SENT_FILE, "data.test={d}/test.jsonl"],
        r"test\.jsonl:1: .*neutral",
    ),
    # CSV / TSV
    (
        "csv-missing-column",
        {"train.csv": b"sentence,label\n\xe5\xa5\xbd,pos\n"},
        CSV,
        r"train\.csv:1: missing column",
    ),
    (
        "csv-short-row",
        {"train.csv": "text,label\n好,pos\n坏\n".encode()},
        CSV,
        r"train\.csv:3: expected 2 fields",
    ),
    ("csv-header-only", {"train.csv": b"text,label\n"}, CSV, r"train\.csv:2: no rows"),
    (
        "csv-non-utf8",
        {"train.csv": b"text,label\n\xff,pos\n"},
        CSV,
        r"train\.csv:2: .*UTF-8",
    ),
    ("tsv-empty-file", {"train.tsv": b""}, [*SENT, "data.train={d}/train.tsv"], r"train\.tsv:1: file is empty"),
    # Files and formats
    ("train-file-missing", {}, [*NER, "data.train={d}/nope.conll"], r"data\.train: .*nope\.conll"),
    ("train-is-a-directory", {}, [*NER, "data.train={d}"], r"data\.train: "),
    ("unknown-format", GOOD_NER, [*NER_FILE, "data.format=xml"], r"data\.format: .*allowed"),
    ("unknown-scheme", GOOD_NER, [*NER_FILE, "data.scheme=BIO9"], r"data\.scheme: .*allowed"),
    # Configuration
    ("unknown-task", {}, ["train", "task=nosuch", "hydra.run.dir={d}/run"], r"task: .*nosuch.*allowed"),
    ("unknown-lang-preset", {}, ["train", "lang=xx", "hydra.run.dir={d}/run"], r"lang: .*xx.*allowed"),
    ("language-without-data", {}, [*NER, "lang=ja"], r"ja"),
    ("epochs-not-int", GOOD_NER, [*NER_FILE, "trainer.epochs=abc"], r"trainer\.epochs"),
    ("negative-lr", GOOD_NER, [*NER_FILE, "optimizer.lr=-1"], r"optimizer\.lr"),
    ("batch-size-zero", GOOD_NER, [*NER_FILE, "trainer.batch_size=0"], r"trainer\.batch_size"),
    ("seed-not-int", GOOD_NER, [*NER_FILE, "seed=abc"], r"seed"),
    ("warmup-conflict", GOOD_NER, [*NER_FILE, "optimizer.warmup_steps=10"], r"warmup"),
    ("unknown-key", GOOD_NER, [*NER_FILE, "trainer.nonsense=1"], r"trainer\.nonsense"),
    ("unknown-precision", GOOD_NER, [*NER_FILE, "trainer.precision=fp8"], r"trainer\.precision: .*allowed"),
    ("unknown-decoding", GOOD_NER, [*NER_FILE, "task.decoding=beam"], r"task\.decoding: .*allowed"),
    ("unknown-pooling", GOOD_NER, [*NER_FILE, "model.pooling=max"], r"model\.pooling: .*allowed"),
    ("steps-without-eval-steps", GOOD_NER, [*NER_FILE, "trainer.eval_strategy=steps"], r"trainer\.eval_steps"),
    ("keep-entityless-range", GOOD_NER, [*NER_FILE, "data.keep_entityless=2"], r"data\.keep_entityless"),
    ("fp16-on-cpu", GOOD_NER, [*NER_FILE, "trainer.precision=fp16", "trainer.cpu=true"], r"fp16 needs a GPU"),
    ("freeze-too-many-layers", GOOD_NER, [*NER_FILE, "model.freeze_layers=99"], r"model\.freeze_layers: .*99"),
    # Models
    (
        "model-dir-not-a-model",
        {"empty/.keep": b""},
        [*NER_FILE[:3], "model={d}/empty", *NER_FILE[4:]],
        r"model\.name_or_path: ",
    ),
    (
        "model-vocab-mismatch",
        {**GOOD_NER, "small-vocab": b""},
        OTHER_MODEL,
        r"tokenizer has \d+ tokens",
    ),
    # Run directories and other commands
    ("run-dir-holds-a-run", {**GOOD_NER, "run/config.yaml": b"keep me\n"}, NER_FILE, r"already holds a run"),
    ("resume-not-a-run", {}, ["train", "resume={d}/nothing"], r"resume=.*not a run directory"),
    ("eval-missing-run", {}, ["eval", "run={d}/none"], r"not a run directory"),
    ("predict-missing-input", {}, ["predict", "run={d}/none", "input={d}/x.txt"], r"input: file not found"),
    ("predict-missing-run", {"x.txt": b"text\n"}, ["predict", "run={d}/none", "input={d}/x.txt"], r"not a run dir"),
    (
        "predict-run-and-model",
        {"x.txt": b"text\n"},
        ["predict", "run={d}", "model={d}", "input={d}/x.txt"],
        r"exactly one",
    ),
    ("predict-model-not-export", {"x.txt": b"t\n"}, ["predict", "model={d}", "input={d}/x.txt"], r"mlft export"),
    ("export-missing-run", {}, ["export", "run={d}/none"], r"not a run directory"),
    ("unknown-command", {}, ["frobnicate"], r"unknown command 'frobnicate'"),
    # Text that is not Unicode: JSON's "\ud800" decodes to a lone surrogate; UTF-8 cannot even encode one
    ("jsonl-lone-surrogate", {"train.jsonl": SURROGATE}, SENT_FILE, r"train\.jsonl:2: .*lone surrogate"),
    ("jsonl-surrogate-no-cache", {"train.jsonl": SURROGATE}, [*SENT_FILE, "data.cache=false"], r":2: .*surrogate"),
    (
        "jsonl-ner-surrogate-token",
        {"train.jsonl": jsonl('{"tokens": ["\\udc80"], "tags": ["O"]}')},
        [*NER, "data.train={d}/train.jsonl"],
        r"train\.jsonl:1: .*surrogate",
    ),
    ("conll-encoded-surrogate", {"train.conll": b"a\tO\n\xed\xa0\x80\tO\n"}, NER_FILE, r":2: not valid UTF-8"),
    # Values that mean nothing
    ("eps-negative", GOOD_NER, [*NER_FILE, "optimizer.eps=-1"], r"optimizer\.eps: must be > 0"),
    ("betas-out-of-range", GOOD_NER, [*NER_FILE, "optimizer.betas=[2,0.5]"], r"optimizer\.betas: .*\[0, 1\)"),
    ("seed-negative", GOOD_NER, [*NER_FILE, "seed=-1"], r"seed: must be in"),
    ("head-lr-negative", GOOD_NER, [*NER_FILE, "optimizer.head_lr=-1"], r"optimizer\.head_lr: must be > 0"),
    ("weight-decay-negative", GOOD_NER, [*NER_FILE, "optimizer.weight_decay=-5"], r"optimizer\.weight_decay"),
    ("warmup-steps-negative", GOOD_NER, [*NER_FILE, "optimizer.warmup_steps=-5"], r"warmup_steps: must be >= 0"),
    ("max-steps-zero", GOOD_NER, [*NER_FILE, "trainer.max_steps=0"], r"trainer\.max_steps: must be >= 1"),
    ("max-steps-negative", GOOD_NER, [*NER_FILE, "trainer.max_steps=-3"], r"trainer\.max_steps: must be >= 1"),
    ("max-train-negative", GOOD_NER, [*NER_FILE, "data.max_train_samples=-1"], r"max_train_samples: must be >= 1"),
    ("max-train-zero", GOOD_NER, [*NER_FILE, "data.max_train_samples=0"], r"max_train_samples: must be >= 1"),
    ("max-dev-zero", GOOD_NER, [*NER_FILE, "data.max_dev_samples=0"], r"max_dev_samples: must be >= 1"),
    (
        "eval-steps-negative",
        GOOD_NER,
        [*NER_FILE, "trainer.eval_strategy=steps", "trainer.eval_steps=-2"],
        r"trainer\.eval_steps: must be >= 1",
    ),
    ("patience-negative", GOOD_NER, [*NER_FILE, "trainer.early_stopping_patience=-1"], r"patience: must be >= 1"),
    ("freeze-layers-negative", GOOD_NER, [*NER_FILE, "model.freeze_layers=-2"], r"freeze_layers: must be >= 0"),
    ("max-length-over-positions", GOOD_NER, [*NER_FILE, "model.max_length=1024"], r"max_length: 1024 .*512 pos"),
    (
        "warmup-steps-alone",
        GOOD_NER,
        [*NER_FILE, "optimizer.warmup_steps=5"],
        r"warmup_steps: conflicts .*optimizer\.warmup_fraction=null",
    ),
    # Destinations that cannot be written, found before any work
    (
        "run-dir-under-a-file",
        {**GOOD_NER, "afile": b"x"},
        [*NER_FILE[:-2], "hydra.run.dir={d}/afile/run", NER_FILE[-1]],
        r"afile is a file",
    ),
    (
        "sweep-under-a-file",
        {**GOOD_NER, "afile": b"x"},
        ["train", "-m", *NER_FILE[1:4], "run_root={d}/afile", "seed=1,2", NER_FILE[-1]],
        r"afile is a file",
    ),
    (
        "export-out-under-a-file",
        {"ner-run": b"", "afile": b"x"},
        ["export", "run={d}/run", "out={d}/afile/x"],
        r"out: .*afile is a file",
    ),
    (
        "predict-output-under-a-file",
        {"ner-run": b"", "afile": b"x", "x.txt": "张伟\n".encode()},
        ["predict", "run={d}/run", "input={d}/x.txt", "output={d}/afile/p.jsonl"],
        r"output: .*afile is a file",
    ),
    (
        "predict-output-is-a-folder",
        {"ner-run": b"", "x.txt": b"t\n"},
        ["predict", "run={d}/run", "input={d}/x.txt", "output={d}/run", "overwrite=true"],
        r"output: .*is a folder",
    ),
    (
        "predict-input-is-a-folder",
        {"ner-run": b""},
        ["predict", "run={d}/run", "input={d}/run"],
        r"input: .*is a folder",
    ),
    # Evaluating a run on other data
    ("eval-test-missing", {"ner-run": b""}, ["eval", "run={d}/run", "test={d}/nope.conll"], r"test: file not found"),
    ("eval-test-is-a-folder", {"ner-run": b""}, ["eval", "run={d}/run", "test={d}"], r"test: .*is a folder"),
    (
        "eval-other-lang-on-own-files",
        {"ner-run": b""},
        ["eval", "run={d}/run", "lang=[de]"],
        r"lang: de is not a language of the run's dev data",
    ),
    (
        "eval-train-split",
        {"ner-run": b""},
        ["eval", "run={d}/run", "split=[train]"],
        r"split\[0\]: 'train' is not allowed",
    ),
    (
        "eval-out-under-a-file",
        {"ner-run": b"", "afile": b"x"},
        ["eval", "run={d}/run", "out={d}/afile/e"],
        r"out: .*afile is a file",
    ),
    # Data read wrongly before
    (
        "csv-unterminated-quote",
        {"train.csv": 'text,label\n好,pos\n"坏,neg\n差,neg\n'.encode()},
        CSV,
        r"train\.csv:3: .*never closed",
    ),
    (
        "csv-one-class",
        {"train.csv": "text,label\n好,pos\n很好,pos\n".encode()},
        CSV,
        r"train\.csv: every training example has the label 'pos'",
    ),
    (
        "ner-all-o",
        {"train.conll": b"a\tO\nb\tO\n\nc\tO\n"},
        NER_FILE,
        r"train\.conll: the training data has no entities",
    ),
    (
        "list-label-single-label-task",
        {"train.jsonl": jsonl('{"text": "好", "label": "pos"}', '{"text": "坏", "label": ["neg"]}')},
        SENT_FILE,
        r"train\.jsonl:2: the label is a list, but task\.multi_label is false",
    ),
    (
        "label-number-and-string",
        {
            "train.jsonl": jsonl(
                '{"text": "好", "label": 1}', '{"text": "坏", "label": "0"}', '{"text": "行", "label": "1"}'
            )
        },
        SENT_FILE,
        r"train\.jsonl:3: label '1' is the label 1 of .*train\.jsonl:1 written as a str",
    ),
    ("tag-name-no-repair-hint", {"train.conll": b"a\tX-PER\n"}, NER_FILE, r"X-PER.*fix the tag"),
    (
        "bmes-read-as-iob2",
        {"train.conll": b"a\tB-PER\nb\tM-PER\nc\tE-PER\n\nd\tS-LOC\ne\tO\n\nf\tB-ORG\ng\tE-ORG\n"},
        NER_FILE,
        r"\(1 problem\):\n  - .*train\.conll: the tags look like BMES, not IOB2: set data\.scheme=BMES",
    ),
    (
        "zero-shot-language-without-data",
        GOOD_NER,
        [*NER_FILE[:2], "lang=zh_to_en", *NER_FILE[3:]],
        r"lang\.eval: en has no dev or test data: the data files hold no dev or test set",
    ),
    # Searches that cannot be sampled: refused before the sweep's folder exists
    *[
        (name, GOOD_NER, [NER_FILE[0], "-m", "hydra/sweeper=optuna", *NER_FILE[1:4], *given, NER_FILE[-1]], pattern)
        for name, given, pattern in [
            (
                "optuna-empty-interval",
                ["optimizer.lr=interval(1e-3,1e-5)"],
                r"optimizer\.lr: interval\(0\.001, 1e-05\) is",
            ),
            (
                "optuna-empty-range",
                ["trainer.batch_size=range(5,1)"],
                r"trainer\.batch_size: range\(5, 1, 1\) holds no",
            ),
            ("optuna-no-trials", ["optimizer.lr=interval(1e-5,1e-3)", "hydra.sweeper.n_trials=0"], r"n_trials: must"),
            ("optuna-minus-trials", ["seed=1,2", "hydra.sweeper.n_trials=-1"], r"n_trials: must be an integer >= 1"),
            ("optuna-direction", ["seed=1,2", "hydra.sweeper.direction=sideways"], r"'sideways' is not a direction"),
            (
                "optuna-storage-folder",
                ["seed=1,2", "hydra.sweeper.storage=sqlite:///{d}/nowhere/study.db"],
                r"storage: .*the folder .*nowhere does not exist",
            ),
        ]
    ],
    # A damaged record in a run directory
    (
        "run-languages-corrupt",
        {"ner-run": b"", "run/languages.json": b"{not json"},
        ["eval", "run={d}/run"],
        r"run/languages\.json: not a readable record of the run",
    ),
    (
        "run-languages-wrong-shape",
        {"ner-run": b"", "run/languages.json": b'{"train": ["zh"]}'},
        ["predict", "run={d}/run", "input={d}/run/config.yaml"],
        r"languages\.json: not the run's languages",
    ),
    (
        "run-metrics-corrupt",
        {"ner-run": b"", "run/metrics.json": b"\x00\x01"},
        ["report", "runs=[{d}/run]", "out={d}/report"],
        r"run/metrics\.json: not a readable record of the run",
    ),
    (
        "run-env-not-an-object",
        {"ner-run": b"", "run/env.json": b"[1]"},
        ["export", "run={d}/run"],
        r"env\.json: not a",
    ),
    # Numbers that mean nothing: refused before a run directory exists
    ("lr-nan", GOOD_NER, [*NER_FILE, "optimizer.lr=nan"], r"optimizer\.lr: must be a finite number, got nan"),
    ("eps-nan", GOOD_NER, [*NER_FILE, "optimizer.eps=nan"], r"optimizer\.eps: must be a finite number"),
    ("weight-decay-inf", GOOD_NER, [*NER_FILE, "optimizer.weight_decay=inf"], r"weight_decay: must be a finite"),
    ("grad-norm-inf", GOOD_NER, [*NER_FILE, "optimizer.max_grad_norm=inf"], r"max_grad_norm: must be a finite"),
    ("temperature-nan", GOOD_NER, [*NER_FILE, "distill.temperature=nan"], r"distill\.temperature: must be a fin"),
    ("beta-nan", GOOD_NER, [*NER_FILE, "optimizer.betas=[0.9,nan]"], r"optimizer\.betas\[1\]: must be a finite"),
    ("eval-batch-zero", {"ner-run": b""}, ["eval", "run={d}/run", "batch_size=0"], r"batch_size: must be >= 1"),
    (
        "predict-batch-negative",
        {"ner-run": b"", "x.txt": b"t\n"},
        ["predict", "run={d}/run", "input={d}/x.txt", "batch_size=-1"],
        r"batch_size: must be >= 1, got -1",
    ),
    ("export-batch-zero", {"ner-run": b""}, ["export", "run={d}/run", "batch_size=0"], r"batch_size: must be >= 1"),
    ("export-max-drop-negative", {"ner-run": b""}, ["export", "run={d}/run", "max_drop=-1"], r"max_drop: .* >= 0"),
    ("export-max-drop-nan", {"ner-run": b""}, ["export", "run={d}/run", "max_drop=.nan"], r"max_drop: must be a fin"),
    ("serve-max-texts-zero", {"ner-run": b""}, ["serve", "run={d}/run", "max_texts=0"], r"max_texts: must be >= 1"),
]
if not torch.cuda.is_available():
    CASES.append(("fp16-without-a-gpu", GOOD_NER, [*NER_FILE, "trainer.precision=fp16"], r"fp16 needs a CUDA GPU"))


def small_vocab_model(directory: Path, model: Path) -> None:
    """A model whose embedding matrix is smaller than its tokenizer's vocabulary."""
    from transformers import AutoModel, AutoTokenizer

    encoder = AutoModel.from_pretrained(model)
    encoder.resize_token_embeddings(8)
    encoder.save_pretrained(directory)
    AutoTokenizer.from_pretrained(model).save_pretrained(directory)


def test_the_table_has_at_least_fifty_distinct_cases():
    assert len(CASES) >= 50 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("files,argv,pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_a_located_message(tmp_path, capsys, tiny_models, ner_run, files, argv, pattern):
    for name, content in files.items():
        if name == "small-vocab":
            small_vocab_model(tmp_path / "other", tiny_models["wordpiece"])
            continue
        if name == "ner-run":  # a finished run to evaluate, predict with or export
            shutil.copytree(ner_run, tmp_path / "run")
            continue
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content)
    before = snapshot(tmp_path)
    args = [a.format(d=tmp_path, model=tiny_models["wordpiece"]) for a in argv]
    err = cli_error(capsys, *args)
    assert re.search(pattern, err), err
    assert "Traceback" not in err
    if "repair" in argv[-1] or "X-PER" in str(files):
        assert "data.repair=true" not in err  # repair does not fix a tag name
    assert snapshot(tmp_path) == before  # nothing overwritten, and a run that never started leaves nothing behind


def test_a_pipe_is_refused_where_a_file_is_read_instead_of_waiting_forever(tmp_path, ner_run, tiny_models):
    import os

    from helpers import run_cli

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # nothing ever writes to it: reading it would block
    commands = [
        ["train", "task=ner", "lang=zh", f"model={tiny_models['unigram']}", f"data.train={fifo}"]
        + [f"hydra.run.dir={tmp_path / 'run'}"],
        ["predict", f"run={ner_run}", f"input={fifo}", f"output={tmp_path / 'p.jsonl'}"],
        ["eval", f"run={ner_run}", f"test={fifo}", f"out={tmp_path / 'eval'}"],
    ]
    for argv in commands:
        result = run_cli(*argv, timeout=120)
        assert result.returncode == 2 and "not a regular file" in result.stderr, result.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_predict_on_a_million_character_line_takes_time_linear_in_its_length(tmp_path, ner_run):
    """Ownership of the words of a window used to loop over every window for every word: quadratic, which never
    ended on one long line. A bound generous for a slow CI machine: the tiny model predicts it in seconds."""
    from helpers import run_cli

    line = ("张伟在北京工作。" * 125_000)[:1_000_000]
    (tmp_path / "long.txt").write_text(line + "\n")
    output = tmp_path / "p.jsonl"
    result = run_cli("predict", f"run={ner_run}", f"input={tmp_path / 'long.txt'}", f"output={output}", timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((tmp_path / "p.jsonl").read_text())
    assert record["text"] == line and all(0 <= e["start"] < e["end"] <= len(line) for e in record["entities"])
