"""Batches of both task kinds: right padding, masks, and widths rounded to a multiple."""

import torch

from mlft.tasks import sequence_classification, token_classification
from mlft.tasks.padding import padded


def test_padded_rounds_the_width_up_and_keeps_the_rows():
    batch = padded([[5, 6, 7], [8]], value=1, pad_to_multiple_of=8)
    assert batch.tolist() == [[5, 6, 7] + [1] * 5, [8] + [1] * 7]
    assert padded([[5, 6, 7], [8]], value=0).shape == (2, 3)


def test_token_batch_masks_padding_and_ignores_it_in_the_loss():
    features = [
        {"input_ids": [0, 11, 12, 2], "labels": [-100, 3, 4, -100]},
        {"input_ids": [0, 13, 2], "labels": [-100, 1, -100]},
    ]
    batch = token_classification.collate(features, pad_id=1, pad_to_multiple_of=8)
    assert batch["input_ids"][1].tolist() == [0, 13, 2, 1, 1, 1, 1, 1]
    assert batch["attention_mask"].sum(1).tolist() == [4, 3]
    assert batch["labels"][1].tolist() == [-100, 1] + [-100] * 6


def test_text_batch_pads_token_types_and_keeps_one_label_per_text():
    features = [
        {"input_ids": [0, 11, 2, 12, 2], "token_type_ids": [0, 0, 0, 1, 1], "labels": 1},
        {"input_ids": [0, 13, 2], "token_type_ids": [0, 0, 0], "labels": 0},
    ]
    batch = sequence_classification.collate(features, pad_id=1)
    assert batch["input_ids"][1].tolist() == [0, 13, 2, 1, 1]
    assert batch["attention_mask"][1].tolist() == [1, 1, 1, 0, 0]
    assert batch["token_type_ids"][0].tolist() == [0, 0, 0, 1, 1]
    assert torch.equal(batch["labels"], torch.tensor([1, 0]))
    assert "token_type_ids" not in sequence_classification.collate([{"input_ids": [0, 2]}], pad_id=1)
