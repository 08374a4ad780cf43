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
