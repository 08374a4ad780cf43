"""trainer.group_by_length: similar lengths per batch, each example once per epoch, one language per batch."""

from __future__ import annotations

import random

from mlft.engine.sampling import EpochSampler, LanguageSampler, group_by_length


def spread(batch: list[int], lengths: list[int]) -> int:
    return max(lengths[i] for i in batch) - min(lengths[i] for i in batch)


def batches(order: list[int], size: int) -> list[list[int]]:
    return [order[i : i + size] for i in range(0, len(order), size)]


def test_each_group_is_sorted_longest_first_and_nothing_is_lost():
    lengths = [random.Random(0).randint(1, 100) for _ in range(250)]
    order = list(range(250))
    random.Random(1).shuffle(order)
    grouped = group_by_length(order, lengths, 100)
    assert sorted(grouped) == list(range(250))
    for start in range(0, 250, 100):
        chunk = grouped[start : start + 100]
        assert set(chunk) == set(order[start : start + 100])
        assert [lengths[i] for i in chunk] == sorted((lengths[i] for i in chunk), reverse=True)


def test_epoch_sampler_batches_are_narrower_and_still_a_permutation():
    rng = random.Random(2)
    lengths = [rng.randint(5, 120) for _ in range(800)]
    plain = list(EpochSampler(800, seed=3))
    grouped = list(EpochSampler(800, seed=3, lengths=lengths, group=8 * 50))
    assert sorted(grouped) == list(range(800)) and grouped != plain
    mean_spread = lambda order: sum(spread(b, lengths) for b in batches(order, 8)) / 100  # noqa: E731
    assert mean_spread(grouped) < mean_spread(plain) / 5


def test_step_mixing_keeps_batches_monolingual_and_groups_them_by_length():
    rng = random.Random(4)
    langs = ["zh"] * 600 + ["en"] * 200
    lengths = [rng.randint(5, 120) for _ in langs]
    args = dict(langs=langs, seed=1, temperature=2.0, mixing="step", batch_size=8)
    plain = LanguageSampler(**args).order()
    grouped = LanguageSampler(**args, lengths=lengths, group=8 * 50).order()
    for order in (plain, grouped):
        assert all(len({langs[i] for i in b}) == 1 for b in batches(order, 8))
    # The same language is drawn for every batch: grouping reorders within a language only.
    assert [langs[b[0]] for b in batches(plain, 8)] == [langs[b[0]] for b in batches(grouped, 8)]
    plain_spread = sum(spread(b, lengths) for b in batches(plain, 8))
    assert sum(spread(b, lengths) for b in batches(grouped, 8)) < plain_spread / 3
