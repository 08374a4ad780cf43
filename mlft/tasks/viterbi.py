"""IOB2-constrained decoding: the most probable tag sequence in which every I-X follows B-X or I-X.

Per-token argmax can produce `O I-PER` or `B-LOC I-ORG`, which strict seqeval counts as errors;
after short training these are frequent. Viterbi over the per-token log-probabilities with the
invalid transitions removed fixes them without a trained CRF layer.
"""

from __future__ import annotations

import numpy as np


def transitions(labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(allowed start, allowed prev→cur) as additive masks: 0 where allowed, -inf where not."""
    n = len(labels)
    start = np.zeros(n)
    moves = np.zeros((n, n))
    for cur, label in enumerate(labels):
        if not label.startswith("I-"):
            continue
        start[cur] = -np.inf
        kind = label[2:]
        for prev, before in enumerate(labels):
            if before not in (f"B-{kind}", f"I-{kind}"):
                moves[prev, cur] = -np.inf
    return start, moves


def viterbi(logprobs: np.ndarray, start: np.ndarray, moves: np.ndarray) -> list[int]:
    """Best label ids for a (words × labels) matrix of log-probabilities."""
    if len(logprobs) == 0:
        return []
    best = start + logprobs[0]
    back = np.zeros(logprobs.shape, dtype=np.int64)
    for t in range(1, len(logprobs)):
        candidates = best[:, None] + moves  # prev × cur
        back[t] = candidates.argmax(0)
        best = candidates.max(0) + logprobs[t]
    path = [int(best.argmax())]
    for t in range(len(logprobs) - 1, 0, -1):
        path.append(int(back[t, path[-1]]))
    return path[::-1]
