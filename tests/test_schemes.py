from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlft.data.schemes import SCHEMES, to_iob2

CASES = {
    "IOB1": (["I-PER", "I-PER", "B-PER", "O", "I-LOC"], ["B-PER", "I-PER", "B-PER", "O", "B-LOC"]),
    "IOB2": (["B-PER", "I-PER", "B-PER", "O", "B-LOC"], ["B-PER", "I-PER", "B-PER", "O", "B-LOC"]),
    "IOBES": (["B-PER", "E-PER", "S-PER", "O", "S-LOC"], ["B-PER", "I-PER", "B-PER", "O", "B-LOC"]),
    "BMES": (["B-ORG", "M-ORG", "E-ORG", "O", "S-LOC"], ["B-ORG", "I-ORG", "I-ORG", "O", "B-LOC"]),
}


@pytest.mark.parametrize("scheme", SCHEMES)
def test_valid_sequences_convert_to_iob2(scheme):
    tags, expected = CASES[scheme]
    converted, problems = to_iob2(tags, scheme)
    assert problems == []
    assert converted == expected


@pytest.mark.parametrize(
    "scheme,tags,index",
    [
        ("IOB2", ["O", "I-PER"], 1),
        ("IOB2", ["B-PER", "I-LOC"], 1),
        ("IOBES", ["B-PER", "O"], 1),
        ("IOBES", ["B-PER", "I-PER"], 1),
        ("BMES", ["M-PER", "E-PER"], 0),
        ("BMES", ["B-PER", "B-LOC", "E-LOC"], 1),
        ("IOB2", ["X-PER"], 0),
        ("BMES", ["I-PER"], 0),
    ],
)
def test_invalid_transitions_are_reported_at_their_token(scheme, tags, index):
    _, problems = to_iob2(tags, scheme)
    assert problems and problems[0].index == index


def test_repair_turns_a_dangling_inside_into_a_begin():
    converted, problems = to_iob2(["O", "I-PER", "I-PER", "O"], "IOB2", repair=True)
    assert problems == []
    assert converted == ["O", "B-PER", "I-PER", "O"]


TAG = st.sampled_from(["O", "B-PER", "I-PER", "E-PER", "S-PER", "M-PER", "B-LOC", "I-LOC", "E-LOC", "X", "-", "B-"])


@given(st.lists(TAG, max_size=20), st.sampled_from(SCHEMES), st.booleans())
def test_any_tag_sequence_converts_to_valid_iob2_or_reports(tags, scheme, repair):
    converted, problems = to_iob2(tags, scheme, repair=repair)
    assert len(converted) == len(tags)
    again, clean = to_iob2(converted, "IOB2")
    assert clean == [] and again == converted  # the output is always valid IOB2
    assert all(0 <= p.index < max(len(tags), 1) for p in problems)


def test_bio_bioes_and_bilou_are_other_names_of_iob2_and_iobes():
    from mlft.data.schemes import to_iob2

    assert to_iob2(["B-PER", "I-PER", "O"], "BIO") == to_iob2(["B-PER", "I-PER", "O"], "IOB2")
    assert to_iob2(["B-PER", "E-PER", "S-LOC"], "BIOES")[0] == ["B-PER", "I-PER", "B-LOC"]
    assert to_iob2(["B-PER", "L-PER", "U-LOC"], "BILOU")[0] == ["B-PER", "I-PER", "B-LOC"]
