"""IOB2-constrained decoding never emits an I- tag that does not continue its own entity."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mlft.data.schemes import iob2_labels
from mlft.tasks.token_classification import decode
from mlft.tasks.viterbi import transitions, viterbi

LABELS = iob2_labels(["LOC", "PER"])


def logprobs_of(rows: list[dict[str, float]]) -> np.ndarray:
    """Log-probabilities from {label: probability} rows; unlisted labels share what is left."""
    matrix = np.zeros((len(rows), len(LABELS)))
    for t, row in enumerate(rows):
        rest = (1.0 - sum(row.values())) / (len(LABELS) - len(row))
        matrix[t] = [row.get(label, rest) for label in LABELS]
    return np.log(matrix)


def test_an_entity_that_argmax_would_start_with_i_is_decoded_whole():
    # argmax: O I-PER I-PER  -> the best valid path starts the entity with B-PER
    rows = [{"O": 0.9}, {"I-PER": 0.5, "B-PER": 0.4}, {"I-PER": 0.9}]
    start, moves = transitions(LABELS)
    assert [LABELS[i] for i in viterbi(logprobs_of(rows), start, moves)] == ["O", "B-PER", "I-PER"]


def test_a_type_switch_inside_an_entity_follows_the_stronger_evidence():
    # argmax: B-LOC I-PER I-PER — one consistent entity wins, PER is more probable overall
    rows = [{"B-LOC": 0.5, "B-PER": 0.45}, {"I-PER": 0.9}, {"I-PER": 0.9}]
    start, moves = transitions(LABELS)
    assert [LABELS[i] for i in viterbi(logprobs_of(rows), start, moves)] == ["B-PER", "I-PER", "I-PER"]


def test_argmax_decoding_is_still_available_and_repairs_like_conlleval():
    example = {"tokens": ["a", "b"], "tags": ["O", "O"]}
    feature = {"example": 0, "positions": [(1, 0), (2, 1)]}
    logprobs = np.full((4, len(LABELS)), np.log(0.01))
    logprobs[1, LABELS.index("I-LOC")] = logprobs[2, LABELS.index("I-LOC")] = np.log(0.9)
    import torch

    outs = [{"logprobs": torch.tensor(logprobs)}]
    assert decode([example], [feature], outs, LABELS, "argmax")[0]["tags"] == ["B-LOC", "I-LOC"]
    viterbi_tags = decode([example], [feature], outs, LABELS, "viterbi")[0]
    assert viterbi_tags["tags"][0] in ("B-LOC", "O") and viterbi_tags["scores"][0] <= 1.0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.floats(0.01, 1.0), min_size=len(LABELS), max_size=len(LABELS)), max_size=12))
def test_every_decoded_sequence_is_valid_iob2_and_as_likely_as_any_valid_one(rows):
    matrix = np.log(np.array(rows).reshape(len(rows), len(LABELS)))
    start, moves = transitions(LABELS)
    path = viterbi(matrix, start, moves)
    tags = [LABELS[i] for i in path]
    for t, tag in enumerate(tags):
        if tag.startswith("I-"):
            assert t > 0 and tags[t - 1][2:] == tag[2:]
    if len(rows) <= 4:  # brute force over all paths
        import itertools

        best = (
            max(
                sum(matrix[t, i] for t, i in enumerate(p)) + start[p[0]] + sum(moves[a, b] for a, b in zip(p, p[1:]))
                for p in itertools.product(range(len(LABELS)), repeat=len(rows))
            )
            if rows
            else 0.0
        )
        got = sum(matrix[t, i] for t, i in enumerate(path))
        assert abs(got - best) < 1e-9
