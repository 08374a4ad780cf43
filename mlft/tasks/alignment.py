"""Word-to-subtoken alignment for NER that is correct for every tokenizer family.

Each dataset word is tokenized on its own, so a subtoken never spans two words (a unigram piece
like `▁中国` would otherwise swallow two labelled characters). For languages written without spaces
the word is tokenized as it appears inside running text: SentencePiece's word-start marker `▁` is
dropped (labelling a bare `▁` is how `is_split_into_words` scores F1 0.0 on Chinese), and
byte-level BPE gets no leading space. A word with no subtokens at all is given the unknown token
so that it still receives a prediction. Long inputs are cut into overlapping windows; each word is
owned (labelled and predicted) by the window where it has the most context.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Languages whose dataset tokens are characters or whose words are not separated by spaces.
NO_SPACE_LANGS = frozenset({"zh", "zh-Hans", "zh-Hant", "ja", "th", "lo", "km", "my", "bo", "yue", "wuu"})
METASPACE = "▁"


@dataclass
class Window:
    start: int
    end: int
    """Words [start, end) of the sentence."""
    owned: list[int] = field(default_factory=list)


class Aligner:
    """Turns word lists into subtoken ids, caching the pieces of each distinct word."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.vocab: dict[str, int] = tokenizer.get_vocab()
        probe = tokenizer.convert_ids_to_tokens(tokenizer("a", add_special_tokens=False)["input_ids"])
        self.metaspace = bool(probe) and probe[0].startswith(METASPACE)
        # Byte-level BPE encodes a leading space into the word's first piece; WordPiece and
        # SentencePiece do not care.
        self.space_sensitive = (
            tokenizer("a", add_special_tokens=False)["input_ids"]
            != tokenizer(" a", add_special_tokens=False)["input_ids"]
        )
        self.cls_id, self.sep_id = special_ids(tokenizer)
        self.unk_id = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else self.sep_id
        self._cache: dict[tuple[str, bool], list[int]] = {}

    def pieces(self, words: list[str], space_before: bool) -> list[list[int]]:
        missing = list({w for w in words if (w, space_before) not in self._cache})
        if missing and len(self._cache) > 500_000:  # a long-running server sees unbounded distinct words
            self._cache.clear()
        if missing:
            texts = [" " + w if space_before and self.space_sensitive else w for w in missing]
            encoded = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
            for word, ids in zip(missing, encoded):
                self._cache[(word, space_before)] = self._fix(ids, space_before)
        return [self._cache[(w, space_before)] for w in words]

    def _fix(self, ids: list[int], space_before: bool) -> list[int]:
        if self.metaspace and not space_before and ids:
            first = self.tokenizer.convert_ids_to_tokens(ids[0])
            if first == METASPACE:
                ids = ids[1:]
            elif first.startswith(METASPACE) and first[1:] in self.vocab:
                ids = [self.vocab[first[1:]]] + ids[1:]
        return ids or [self.unk_id]


def special_ids(tokenizer: Any) -> tuple[int, int]:
    cls_id = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    sep_id = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    if cls_id is None or sep_id is None:
        raise ValueError("the tokenizer has no CLS/BOS and SEP/EOS tokens")
    return cls_id, sep_id


def windows(lengths: list[int], capacity: int, stride: int) -> list[Window]:
    """Covers words with windows of at most `capacity` subtokens overlapping by about `stride`.

    Every word is owned by exactly one window: the one where its distance to the nearest window
    edge is largest, so predictions come from the best context.
    """
    spans: list[Window] = []
    start, n = 0, len(lengths)
    while True:
        end, total = start, 0
        while end < n and (total + lengths[end] <= capacity or end == start):
            total += lengths[end]
            end += 1
        spans.append(Window(start, end))
        if end >= n:
            break
        back, overlap = end, 0
        while back - 1 > start and overlap + lengths[back - 1] <= stride:
            back -= 1
            overlap += lengths[back]
        start = max(back, start + 1)
    prefix = [0]
    for length in lengths:
        prefix.append(prefix[-1] + length)
    # Windows are sorted by start and end: the ones holding a word are a short run that moves forward with it,
    # so ownership costs time linear in the words (a million-character line is no longer quadratic).
    first = 0
    for word in range(n):
        while spans[first].end <= word:
            first += 1
        best, best_score = None, -1
        for window in spans[first:]:
            if window.start > word:
                break
            left = prefix[word] - prefix[window.start]
            right = prefix[window.end] - prefix[word + 1]
            if min(left, right) > best_score:
                best, best_score = window, min(left, right)
        assert best is not None
        best.owned.append(word)
    return spans


def encode_words(
    aligner: Aligner, words: list[str], label_ids: list[int] | None, lang: str, max_length: int, stride: int
) -> list[dict[str, Any]]:
    """Encodes one sentence into one or more windows.

    Returns features with `input_ids`, `labels` (-100 except on the first subtoken of each owned
    word) and `positions`: (subtoken position, word index) of every owned word.
    """
    capacity = max_length - 2
    pieces = [p[:capacity] for p in aligner.pieces(words, space_before=lang not in NO_SPACE_LANGS)]
    features = []
    for window in windows([len(p) for p in pieces], capacity, stride):
        ids = [aligner.cls_id]
        labels = [-100]
        positions = []
        owned = set(window.owned)
        for word in range(window.start, window.end):
            if word in owned:
                positions.append((len(ids), word))
            labels += [label_ids[word] if (label_ids is not None and word in owned) else -100] + [-100] * (
                len(pieces[word]) - 1
            )
            ids += pieces[word]
        ids.append(aligner.sep_id)
        labels.append(-100)
        features.append({"input_ids": ids, "labels": labels, "positions": positions})
    return features
