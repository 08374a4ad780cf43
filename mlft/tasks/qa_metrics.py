"""Exact match and F1 of extractive QA answers, normalised per language as the benchmarks' own scripts do.

- Chinese, Japanese, Thai and other languages written without spaces: CMRC 2018's scoring. A text is segmented
  into its characters of those scripts and the space-separated words of anything else (digits, Latin words), after
  lower-casing and dropping punctuation; F1 is the longest common substring of the two segmentations over each's
  length, exact match compares the texts without punctuation and spaces.
- Other languages: SQuAD's normalisation (lower-case, punctuation dropped, articles dropped, whitespace tokens) with
  MLQA's per-language articles and its Unicode punctuation; F1 is the overlap of the two bags of tokens.

Both take the maximum over the gold answers. An unanswerable question's gold is the empty answer: a prediction
scores 1 only when it is empty too.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter

from mlft.tasks.alignment import NO_SPACE_LANGS

ARTICLES = {
    "en": r"\b(a|an|the)\b",
    "es": r"\b(un|una|unos|unas|el|la|los|las)\b",
    "de": r"\b(ein|eine|einer|eines|einem|einen|der|die|das|des|dem|den)\b",
    "vi": r"\b(của|là|cái|chiếc|những)\b",
    "ar": r"\sال^|ال",
}
"""MLQA's articles per language (its evaluation script); other languages have none removed."""
CHARACTER_SCRIPTS = re.compile(
    "[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"
)
"""Scripts written without spaces between words (CJK ideographs, kana, Thai, Lao, Khmer, Myanmar): each of their
characters is a segment of its own, in scoring and in a QA context's words."""


def _without_punctuation(text: str) -> str:
    """Without ASCII punctuation and every Unicode punctuation or symbol character (full-width ，。《》 included)."""
    return "".join(ch for ch in text if ch not in string.punctuation and unicodedata.category(ch)[0] not in "PS")


def character_scored(lang: str | None) -> bool:
    return (lang or "").split("-")[0] in NO_SPACE_LANGS or lang in NO_SPACE_LANGS


def segments(text: str) -> list[str]:
    """CMRC 2018's mixed segmentation: characters of the character scripts, space-separated words of the rest."""
    out: list[str] = []
    run = ""
    for ch in _without_punctuation(text.lower().strip()):
        if CHARACTER_SCRIPTS.match(ch):
            out += run.split()
            run = ""
            out.append(ch)
        else:
            run += ch
    return out + run.split()


def words(text: str, lang: str | None) -> list[str]:
    """SQuAD's normalisation with MLQA's punctuation and the language's articles, as whitespace tokens."""
    text = _without_punctuation(text.lower())
    article = ARTICLES.get((lang or "").split("-")[0])
    if article:
        text = re.sub(article, " ", text)
    return text.split()


def _longest_common_run(a: list[str], b: list[str]) -> int:
    best, previous = 0, [0] * (len(b) + 1)
    for x in a:
        current = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            if x == y:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best


def exact(gold: str, predicted: str, lang: str | None) -> float:
    if character_scored(lang):
        squeeze = "".join(segments(gold)), "".join(segments(predicted))
        return float(squeeze[0] == squeeze[1])
    return float(words(gold, lang) == words(predicted, lang))


def f1(gold: str, predicted: str, lang: str | None) -> float:
    if character_scored(lang):
        a, b = segments(gold), segments(predicted)
        if not a or not b:
            return float(a == b)
        common = _longest_common_run(a, b)
    else:
        a, b = words(gold, lang), words(predicted, lang)
        if not a or not b:
            return float(a == b)
        common = sum((Counter(a) & Counter(b)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(b), common / len(a)
    return 2 * precision * recall / (precision + recall)


def best_of(golds: list[str], predicted: str, lang: str | None) -> tuple[float, float]:
    """(exact match, F1) against the best-matching gold answer; no gold answer means the empty one."""
    golds = golds or [""]
    return max(exact(g, predicted, lang) for g in golds), max(f1(g, predicted, lang) for g in golds)
