"""Training orders: a seeded shuffle, optional length grouping, and temperature sampling of languages.

Every order is a function of (seed, epoch) only, so a resumed run replays the same data, the same
language mix included, from the epoch and the number of batches already consumed.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Sampler

from mlft.engine import tracking

log = logging.getLogger("mlft")


def _generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    base = seed * 1_000_003 + epoch
    return torch.Generator().manual_seed(base if stream == 0 else base * 1_009 + stream)


# Length grouping sorts this many batches' worth of examples at a time (as transformers' LengthGroupedSampler).
GROUP_BATCHES = 50


def group_by_length(order: list[int], lengths: list[int], batch_size: int, generator: torch.Generator) -> list[int]:
    """Batches of similar lengths, in random order.

    `order` is cut into groups of GROUP_BATCHES batches, each sorted by length and cut into batches;
    then the full batches are shuffled (a smaller last batch stays last, so batch boundaries hold).
    Sorting alone would run each group from its longest batch to its shortest, which cost F1 where the
    shuffled batches did not (docs/results/benchmarks.md).
    """
    group = GROUP_BATCHES * batch_size
    chunks = [order[i : i + group] for i in range(0, len(order), group)]
    grouped = [i for chunk in chunks for i in sorted(chunk, key=lambda j: -lengths[j])]
    batches = [grouped[i : i + batch_size] for i in range(0, len(grouped), batch_size)]
    last = batches.pop() if batches and len(batches[-1]) < batch_size else []
    shuffled = [batches[j] for j in torch.randperm(len(batches), generator=generator).tolist()]
    return [i for batch in shuffled for i in batch] + last


class EpochSampler(Sampler[int]):
    """Every example once per epoch, in a shuffle that depends only on (seed, epoch), optionally length-grouped."""

    def __init__(self, size: int, seed: int, lengths: list[int] | None = None, batch_size: int = 1):
        self.size, self.seed, self.epoch = size, seed, 0
        self.lengths, self.batch_size = lengths, batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = _generator(self.seed, self.epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        if self.lengths is not None:
            order = group_by_length(order, self.lengths, self.batch_size, generator)
        return iter(order)

    def __len__(self) -> int:
        return self.size


def language_probabilities(sizes: dict[str, int], temperature: float) -> dict[str, float]:
    """p_l ∝ n_l^(1/T): T=1 samples in proportion to size, T→∞ uniformly (Conneau & Lample 2019)."""
    weights = {lang: n ** (1.0 / temperature) for lang, n in sizes.items()}
    total = sum(weights.values())
    return {lang: w / total for lang, w in weights.items()}


def quotas(probabilities: dict[str, float], total: int) -> dict[str, int]:
    """Integer counts summing to `total`, as close to total·p as possible (largest remainder)."""
    exact = {lang: p * total for lang, p in probabilities.items()}
    counts = {lang: math.floor(x) for lang, x in exact.items()}
    by_remainder = sorted(exact, key=lambda lang: (counts[lang] - exact[lang], lang))
    for lang in by_remainder[: total - sum(counts.values())]:
        counts[lang] += 1
    return counts


class LanguageSampler(Sampler[int]):
    """Samples training languages with temperature T; an epoch has as many examples as the data.

    A language needing more examples than it has cycles through fresh shuffles of its own; one
    needing fewer takes a random subset. `mixing="epoch"` fixes each language's share of the epoch
    (largest remainder of N·p) and shuffles everything together; `mixing="step"` draws one language
    per batch, so each batch is monolingual and the realised mix varies around p.
    """

    def __init__(
        self,
        langs: list[str],
        seed: int,
        temperature: float,
        mixing: str,
        batch_size: int,
        lengths: list[int] | None = None,
    ):
        self.langs, self.seed, self.epoch = langs, seed, 0
        self.mixing, self.batch_size = mixing, batch_size
        self.lengths = lengths
        self.indices: dict[str, list[int]] = {}
        for i, lang in enumerate(langs):
            self.indices.setdefault(lang, []).append(i)
        self.probabilities = language_probabilities({k: len(v) for k, v in self.indices.items()}, temperature)
        self._cache: tuple[int, list[int]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _stream(self, lang: str, stream: int) -> Iterator[int]:
        """Endless shuffles of one language's examples (a fresh shuffle each pass)."""
        generator = _generator(self.seed, self.epoch, stream)
        pool = self.indices[lang]
        while True:
            order = [pool[j] for j in torch.randperm(len(pool), generator=generator).tolist()]
            if self.mixing == "step" and self.lengths is not None:
                # A monolingual batch is consecutive draws from one stream: grouping the stream groups the batch.
                order = group_by_length(order, self.lengths, self.batch_size, generator)
            yield from order

    def _order(self) -> list[int]:
        streams = {lang: self._stream(lang, k + 1) for k, lang in enumerate(self.indices)}
        generator = _generator(self.seed, self.epoch)
        if self.mixing == "step":
            names = list(self.probabilities)
            weights = torch.tensor([self.probabilities[n] for n in names], dtype=torch.float64)
            draws = torch.multinomial(weights, len(self) // self.batch_size, replacement=True, generator=generator)
            return [next(streams[names[d]]) for d in draws.tolist() for _ in range(self.batch_size)]
        counts = quotas(self.probabilities, len(self.langs))
        picked = [next(streams[lang]) for lang, n in counts.items() for _ in range(n)]
        order = [picked[j] for j in torch.randperm(len(picked), generator=generator).tolist()]
        if self.lengths is not None:
            order = group_by_length(order, self.lengths, self.batch_size, generator)
        return order

    def order(self) -> list[int]:
        if self._cache is None or self._cache[0] != self.epoch:
            self._cache = (self.epoch, self._order())
        return self._cache[1]

    def mix(self) -> dict[str, int]:
        """Examples per language in the current epoch (the realised mix)."""
        return dict(Counter(self.langs[i] for i in self.order()))

    def __iter__(self) -> Iterator[int]:
        return iter(self.order())

    def __len__(self) -> int:
        if self.mixing == "step":
            return math.ceil(len(self.langs) / self.batch_size) * self.batch_size
        return len(self.langs)


def attach_language_mix(hooks: Any) -> None:
    """Each epoch's realised language mix is logged, sent to the trackers and kept in the run's state."""

    def record(loop: Any) -> None:
        sampler, state = loop.sampler, loop.state
        if not isinstance(sampler, LanguageSampler):
            return
        sampler.set_epoch(state.epoch)
        mix = sampler.mix()
        if len(state.lang_mix) <= state.epoch:
            state.lang_mix.append(mix)
        total = sum(mix.values())
        shares = {f"lang_mix/{lang}": n / total for lang, n in mix.items()}
        tracking.safely("logging", lambda: loop.accelerator.log(shares, step=state.global_step))
        log.info(
            "epoch %d language mix: %s (target %s)",
            state.epoch,
            ", ".join(f"{lang} {n / total:.1%}" for lang, n in sorted(mix.items())),
            ", ".join(f"{lang} {p:.1%}" for lang, p in sorted(sampler.probabilities.items())),
        )

    hooks.add("epoch_start", record)
