"""trainer.group_by_length: similar lengths per batch, each example once per epoch, one language per batch."""

from __future__ import annotations

import random

import torch

from mlft.engine.sampling import GROUP_BATCHES, EpochSampler, LanguageSampler, group_by_length


def spread(batch: list[int], lengths: list[int]) -> int:
    return max(lengths[i] for i in batch) - min(lengths[i] for i in batch)


def batches(order: list[int], size: int) -> list[list[int]]:
    return [order[i : i + size] for i in range(0, len(order), size)]


def test_batches_are_sorted_within_groups_and_shuffled_between_them():
    rng = random.Random(0)
    lengths = [rng.randint(1, 100) for _ in range(805)]
    order = list(range(805))
    rng.shuffle(order)
    grouped = group_by_length(order, lengths, 8, torch.Generator().manual_seed(0))
    assert sorted(grouped) == list(range(805))
    groups = [set(order[i : i + 8 * GROUP_BATCHES]) for i in range(0, 805, 8 * GROUP_BATCHES)]
    full, last = batches(grouped, 8)[:-1], batches(grouped, 8)[-1]
    assert len(last) == 805 % 8 and all(len(b) == 8 for b in full)  # the short batch stays last: boundaries hold
    for batch in full:
        assert any(set(batch) <= g for g in groups)  # one group's examples ...
        assert [lengths[i] for i in batch] == sorted((lengths[i] for i in batch), reverse=True)  # ... by length
    # Batch order is shuffled, not each group's longest-to-shortest run.
    longest = [lengths[b[0]] for b in full[:GROUP_BATCHES]]
    assert longest != sorted(longest, reverse=True)


def test_epoch_sampler_batches_are_narrower_and_still_a_permutation():
    rng = random.Random(2)
    lengths = [rng.randint(5, 120) for _ in range(800)]
    plain = list(EpochSampler(800, seed=3))
    grouped = list(EpochSampler(800, seed=3, lengths=lengths, batch_size=8))
    assert sorted(grouped) == list(range(800)) and grouped != plain
    mean_spread = lambda order: sum(spread(b, lengths) for b in batches(order, 8)) / 100  # noqa: E731
    assert mean_spread(grouped) < mean_spread(plain) / 5


def test_step_mixing_keeps_batches_monolingual_and_groups_them_by_length():
    rng = random.Random(4)
    langs = ["zh"] * 600 + ["en"] * 200
    lengths = [rng.randint(5, 120) for _ in langs]
    args = dict(langs=langs, seed=1, temperature=2.0, mixing="step", batch_size=8)
    plain = LanguageSampler(**args).order()
    grouped = LanguageSampler(**args, lengths=lengths).order()
    for order in (plain, grouped):
        assert all(len({langs[i] for i in b}) == 1 for b in batches(order, 8))
    # The same language is drawn for every batch: grouping reorders within a language only.
    assert [langs[b[0]] for b in batches(plain, 8)] == [langs[b[0]] for b in batches(grouped, 8)]
    plain_spread = sum(spread(b, lengths) for b in batches(plain, 8))
    assert sum(spread(b, lengths) for b in batches(grouped, 8)) < plain_spread / 3
