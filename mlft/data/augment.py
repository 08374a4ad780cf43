"""Training-data augmentation, deterministic from the run's seed, on the two shapes examples come in: tagged token
sequences (IOB2) and word lists of a text. Which apply to a task is the task type's choice (its `augment`).

- Mention replacement (Dai & Adel 2020): an entity mention becomes another training mention of its type.
- Segment shuffling (Dai & Adel 2020): the tokens inside a segment (an entity, or a run of O) are shuffled.
- EDA (Wei & Zou 2019): random swaps, deletions, and, with a synonym file, synonym replacement and insertion.
- Code-switching (CoSDA-ML, Qin et al. 2020): words with an entry in a bilingual dictionary become one of their
  translations.
Tags stay aligned by construction: a replaced entity is re-tagged B-, I-, ... of its type; a word that becomes
several words keeps its tag on the first and continues it (I-) on the rest.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlft.data.readers import read_lines
from mlft.data.schemes import spans_to_iob2, to_spans
from mlft.errors import DataError

Tagged = tuple[list[str], list[str]]
WordLists = dict[str, list[list[str]]]
"""A word -> its alternatives (synonyms or translations), each a list of words."""


def read_word_lists(path: str, key: str) -> WordLists:
    """A synonym or dictionary file: per line a word, a tab, and an alternative (more tabs: more alternatives); a
    line without tabs splits at its first space (the MUSE dictionaries' `word translation`). Lines starting with #
    are comments. An alternative of several words is space-separated."""
    source = Path(path)
    if not source.is_file():
        raise DataError(f"{key}: file not found: {path}")
    out: WordLists = {}
    for number, line in enumerate(read_lines(source), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t") if "\t" in line else line.strip().split(" ", 1)
        word, alternatives = parts[0].strip(), [p.split() for p in parts[1:] if p.strip()]
        if not word or not alternatives:
            raise DataError(f"{path}:{number}: expected a word and at least one alternative (tab-separated)")
        out.setdefault(word, []).extend(alternatives)
    if not out:
        raise DataError(f"{path}: no entries")
    return out


def mentions(examples: list[Tagged]) -> dict[str, list[list[str]]]:
    """Every entity mention of the training data by type (duplicates kept: frequent mentions are drawn more)."""
    out: dict[str, list[list[str]]] = {}
    for tokens, tags in examples:
        for start, end, kind in to_spans(tags, "IOB2")[0]:
            out.setdefault(kind, []).append(tokens[start:end])
    return out


def _segments(tags: list[str]) -> list[tuple[int, int, str | None]]:
    """[start, end) runs covering the sentence: entities with their type, and runs of O (type None)."""
    entities = to_spans(tags, "IOB2")[0]
    out: list[tuple[int, int, str | None]] = []
    at = 0
    for start, end, kind in entities:
        if start > at:
            out.append((at, start, None))
        out.append((start, end, kind))
        at = end
    if at < len(tags):
        out.append((at, len(tags), None))
    return out


def _rebuild(pieces: list[tuple[list[str], str | None]]) -> Tagged:
    tokens: list[str] = []
    spans = []
    for words, kind in pieces:
        if kind is not None:
            spans.append((len(tokens), len(tokens) + len(words), kind))
        tokens += words
    return tokens, spans_to_iob2(spans, len(tokens))


def replace_mentions(example: Tagged, pool: dict[str, list[list[str]]], p: float, rng: random.Random) -> Tagged:
    tokens, tags = example
    pieces = []
    for start, end, kind in _segments(tags):
        words = tokens[start:end]
        if kind is not None and pool.get(kind) and rng.random() < p:
            words = list(rng.choice(pool[kind]))
        pieces.append((words, kind))
    return _rebuild(pieces)


def shuffle_segments(example: Tagged, p: float, rng: random.Random) -> Tagged:
    tokens, tags = example
    pieces = []
    for start, end, kind in _segments(tags):
        words = tokens[start:end]
        if len(words) > 1 and rng.random() < p:
            words = rng.sample(words, len(words))
        pieces.append((words, kind))
    return _rebuild(pieces)


def code_switch_tagged(example: Tagged, dictionary: WordLists, p: float, rng: random.Random) -> Tagged:
    tokens, tags = example
    out_tokens: list[str] = []
    out_tags: list[str] = []
    for token, tag in zip(tokens, tags):
        choices = translations(dictionary, token)
        words = list(rng.choice(choices)) if choices and rng.random() < p else [token]
        out_tokens += words
        out_tags += [tag] + ([tag if tag == "O" else "I-" + tag[2:]] * (len(words) - 1))
    return out_tokens, out_tags


def code_switch_words(words: list[str], dictionary: WordLists, p: float, rng: random.Random) -> list[str]:
    out: list[str] = []
    for word in words:
        choices = translations(dictionary, word)
        out += list(rng.choice(choices)) if choices and rng.random() < p else [word]
    return out


def translations(dictionary: WordLists, word: str) -> list[list[str]]:
    """The word's entries, else its lower-case form's (dictionaries list "london", texts write "London")."""
    return dictionary.get(word) or dictionary.get(word.lower()) or []


def _count(words: list[str], alpha: float) -> int:
    return max(1, round(alpha * len(words)))


def eda_swap(words: list[str], alpha: float, rng: random.Random) -> list[str]:
    out = list(words)
    for _ in range(_count(words, alpha) if len(words) > 1 else 0):
        i, j = rng.randrange(len(out)), rng.randrange(len(out))
        out[i], out[j] = out[j], out[i]
    return out


def eda_delete(words: list[str], alpha: float, rng: random.Random) -> list[str]:
    if len(words) < 2:
        return list(words)
    kept = [w for w in words if rng.random() >= alpha]
    return kept or [rng.choice(words)]


def eda_synonyms(words: list[str], synonyms: WordLists, alpha: float, rng: random.Random) -> list[str]:
    candidates = [i for i, w in enumerate(words) if w in synonyms]
    chosen = set(rng.sample(candidates, min(len(candidates), _count(words, alpha))))
    out: list[str] = []
    for i, word in enumerate(words):
        out += list(rng.choice(synonyms[word])) if i in chosen else [word]
    return out


def eda_insert(words: list[str], synonyms: WordLists, alpha: float, rng: random.Random) -> list[str]:
    out = list(words)
    candidates = [w for w in words if w in synonyms]
    for _ in range(_count(words, alpha) if candidates else 0):
        at = rng.randrange(len(out) + 1)
        out[at:at] = list(rng.choice(synonyms[rng.choice(candidates)]))
    return out


Augmenter = Callable[[dict[str, Any], random.Random], dict[str, Any]]
"""An example and a random generator -> a changed copy of the example."""


def augment(
    examples: list[dict[str, Any]], methods: dict[str, Augmenter], copies: int, seed: int
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """`copies` new examples per example and method (a copy equal to the original or to an earlier copy is
    dropped), with where each
    came from in `loc`; and how many each method added. Each method draws from its own generator, seeded from
    the run's seed and its name, so turning one method on or off does not change what another produces."""
    added: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    for name, method in methods.items():
        rng = random.Random(f"{seed}:{name}")
        counts[name] = 0
        for example in examples:
            seen = [example]
            for copy in range(copies):
                new = method(example, rng)
                if new not in seen:
                    seen.append(new)
                    added.append({**new, "loc": f"{example['loc']} ({name} {copy + 1})"})
                    counts[name] += 1
    return added, counts
