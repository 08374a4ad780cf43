"""The extractive-QA results of docs/results/qa.md: multilingual-e5-small fine-tuned on Chinese (DRCD dev + CMRC 2018
dev, a held-out slice of their contexts as dev), tested on DRCD test and zero-shot on XQuAD's 12 languages.

    python scripts/qa_results.py --data ../shared/data/qa --workdir /work/runs-qa

The corpora are not mlft's (no PyPI package carries them): --data names the folder with cmrc2018_dev.json,
drcd_dev.json, drcd_test.json and xquad.<lang>.json. The script writes the run's data files under --workdir (JSONL
with a `lang` column, so one test file holds every test language; DRCD's traditional Chinese is `zh-Hant`), runs
`mlft train task=qa` once with every test language evaluated at the end, and prints the command and the table.
--quick checks the plumbing on a few questions (not a result).
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
XQUAD = ("ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh")
HELD_OUT = 0.05
"""Share of the training corpora's contexts held out as dev (whole contexts: no question of a dev context trains)."""


def questions(path: Path, lang: str) -> list[list[dict]]:
    """A SQuAD file's questions grouped by context, as mlft's JSONL records."""
    groups = []
    for article in json.loads(path.read_text())["data"]:
        for paragraph in article["paragraphs"]:
            groups.append(
                [
                    {
                        "id": qa["id"],
                        "question": qa["question"],
                        "context": paragraph["context"],
                        "answers": [{"text": a["text"], "answer_start": a["answer_start"]} for a in qa["answers"]],
                        "lang": lang,
                    }
                    for qa in paragraph["qas"]
                ]
            )
    return groups


def write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return path


def prepare(data: Path, folder: Path, quick: bool) -> dict[str, Path]:
    contexts = questions(data / "drcd_dev.json", "zh") + questions(data / "cmrc2018_dev.json", "zh")
    random.Random(13).shuffle(contexts)
    cut = int(len(contexts) * HELD_OUT)
    dev, train = contexts[:cut], contexts[cut:]
    tests = questions(data / "drcd_test.json", "zh-Hant")
    for lang in XQUAD:
        tests += questions(data / f"xquad.{lang}.json", lang)
    if quick:
        train, dev, tests = train[:8], dev[:2], tests[:2] + [g for g in tests if g[0]["lang"] == "de"][:2]
    folder.mkdir(parents=True, exist_ok=True)
    flat = [[q for group in groups for q in group] for groups in (train, dev, tests)]
    return {split: write(folder / f"{split}.jsonl", qs) for split, qs in zip(("train", "dev", "test"), flat)}


def coverage(files: dict[str, Path], max_length: int, stride: int) -> None:
    """Per language: questions, windows, tokens, and the questions whose first gold answer some window holds
    exactly (what training can learn and decoding can return), with the offline default's tokenizer."""
    from transformers import AutoTokenizer

    from mlft.config import DataConfig, ModelConfig, TaskConfig
    from mlft.data.load import load_data
    from mlft.models.cache import converted_model
    from mlft.tasks import build_task

    tokenizer = AutoTokenizer.from_pretrained(converted_model())
    config = TaskConfig(name="qa", type="question_answering", metric="f1")
    task = build_task(
        config, ModelConfig(name="me5_small", name_or_path="-", max_length=max_length, stride=stride), []
    )
    data = DataConfig(repair=True, **{split: str(path) for split, path in files.items()})
    langs = ["zh", "zh-Hant", *[lang for lang in XQUAD if lang != "zh"]]
    splits = load_data(data, config, task, ["zh"], langs).splits
    print(
        "| set | lang | questions | windows | tokens | gold answer held by a window |\n|---|---|---:|---:|---:|---:|"
    )
    for split, by_lang in splits.items():
        for lang, examples in by_lang.items():
            features = task.encode(examples, tokenizer, lang)
            held = set()
            for f in features:
                gold = examples[f["example"]]["answers"][0]
                if f["start_positions"]:
                    a, b = f["offsets"][f["start_positions"]][0], f["offsets"][f["end_positions"]][1]
                    context = examples[f["example"]]["context"]
                    held |= {f["example"]} if context[a:b].strip() == gold["text"].strip() else set()
            tokens = sum(len(f["input_ids"]) for f in features)
            print(f"| {split} | {lang} | {len(examples)} | {len(features)} | {tokens} | {len(held)} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder of the QA corpora (../shared/data/qa)")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--model", help="a model folder instead of the offline default (plumbing checks)")
    parser.add_argument("--quick", action="store_true", help="a few questions: checks the plumbing, no result")
    parser.add_argument("--coverage", action="store_true", help="only count windows and recoverable answers")
    parser.add_argument("overrides", nargs="*", help="more mlft train overrides (e.g. optimizer.lr=5e-5)")
    args = parser.parse_args(argv)
    files = prepare(args.data, args.workdir / "data", args.quick)
    if args.coverage:
        coverage(files, 384, 128)
        return
    langs = ",".join(["zh", "zh-Hant", *[lang for lang in XQUAD if lang != "zh"]])
    run = args.workdir / ("quick" if args.quick else "run")
    command = [
        "train",
        "task=qa",
        "lang.name=zh_to_xquad",
        "lang.train=[zh]",
        f"lang.eval=[{langs}]",
        *(f"data.{split}={path}" for split, path in files.items()),
        "data.repair=true",  # CMRC 2018 dev: seven answers start a character or two off
        "model.max_length=384",
        "model.stride=128",
        *([f"model={args.model}"] if args.model else []),
        *(["trainer.epochs=1", "model.max_length=64", "model.stride=16", "task.max_question_length=16"] * args.quick),
        "trainer.progress=false",
        f"hydra.run.dir={run}",
        *args.overrides,
    ]
    print("$ mlft " + " ".join(shlex.quote(a) for a in command), flush=True)
    subprocess.run([sys.executable, "-m", "mlft", *command], check=True, cwd=ROOT)
    print((run / "report.md").read_text())


if __name__ == "__main__":
    main()
