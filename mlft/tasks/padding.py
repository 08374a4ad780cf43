"""Right-padding of variable-length feature rows into one batch tensor."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def padded(rows: Sequence[Sequence[int]], value: int, pad_to_multiple_of: int = 1) -> torch.Tensor:
    """The rows as one long tensor, each right-padded with `value` to the longest row's length rounded up to a
    multiple of `pad_to_multiple_of` (GPU matrix units run fastest on multiples of 8)."""
    longest = max(len(row) for row in rows)
    width = -(-longest // pad_to_multiple_of) * pad_to_multiple_of
    batch = torch.full((len(rows), width), value, dtype=torch.long)
    for i, row in enumerate(rows):
        batch[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return batch


def attention_mask(rows: Sequence[Sequence[int]], width: int) -> torch.Tensor:
    """1 over each row's own positions, 0 over its padding, for a batch `width` positions wide."""
    lengths = torch.tensor([len(row) for row in rows])
    return (torch.arange(width) < lengths[:, None]).long()


def input_batch(features: Sequence[dict], pad_id: int, pad_to_multiple_of: int = 1) -> dict[str, torch.Tensor]:
    """The model inputs of a batch: token ids, attention mask, and segment ids where the features have them (the
    two texts of a pair)."""
    rows = [f["input_ids"] for f in features]
    ids = padded(rows, pad_id, pad_to_multiple_of)
    batch = {"input_ids": ids, "attention_mask": attention_mask(rows, ids.shape[1])}
    if "token_type_ids" in features[0]:
        batch["token_type_ids"] = padded([f["token_type_ids"] for f in features], 0, pad_to_multiple_of)
    return batch
