"""The scheduler of `mlft serve`: concurrent requests share model calls, fairly, one call at a time.

A request is split into its texts; each model call takes texts round-robin from the requests waiting (one text of
each in turn, the oldest first), up to `max_batch` texts and `max_chars` characters in all, and only of one
language. So a small request that arrives beside a big one is in the next call, not behind all of the big one's
texts: it waits for the call in flight, then shares the next. Requests that arrive together share a call (the
first waits `wait_s` for company). A request whose client went away is cancelled, and its texts not yet predicted
are dropped. A call that fails is repeated text by text, so that one bad request fails only itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Predict = Callable[[list[Any], str | None, int], list[dict[str, Any]]]
"""A model call: requests, their language, the batch size -> one record per request (mlft.commands.predict)."""


@dataclass(eq=False)
class Pending:
    """One request being answered: its texts, the records so far, and the future its handler awaits."""

    texts: list[Any]
    lang: str | None
    future: asyncio.Future
    records: list[dict[str, Any] | None] = field(default_factory=list)
    sent: int = 0
    """Texts handed to model calls so far (in order)."""
    served: int = -1
    """The model call that last took a text of it (-1: none yet): the least recently served go first."""

    def __post_init__(self) -> None:
        self.records = [None] * len(self.texts)


def size(text: Any) -> int:
    """A text's characters (a JSON record's: of all its strings)."""
    return len(text) if isinstance(text, str) else sum(len(v) for v in text.values() if isinstance(v, str))


class Batcher:
    def __init__(self, predictor: Predict, max_batch: int, wait_s: float, max_chars: int | None = None):
        self.predictor, self.max_batch, self.wait_s = predictor, max_batch, wait_s
        self.max_chars = max_chars
        self.waiting: list[Pending] = []
        self.arrived = asyncio.Event()
        self.calls = 0

    async def submit(self, texts: list[Any], lang: str | None) -> list[dict[str, Any]]:
        """The records of `texts`; cancelling the call (a client that went away) drops what is not predicted yet."""
        pending = Pending(list(texts), lang, asyncio.get_running_loop().create_future())
        self.waiting.append(pending)
        self.arrived.set()
        try:
            return await pending.future
        finally:
            if not pending.future.done():
                pending.future.cancel()

    def take(self) -> tuple[str | None, list[tuple[Pending, int]]]:
        """The next call's texts (request, index): one text of each waiting request in turn, starting with the one
        served longest ago (a new one first), in the language of that one."""
        waiting = [p for p in self.waiting if not p.future.done() and p.sent < len(p.texts)]
        self.waiting = sorted(waiting, key=lambda p: p.served)  # stable: in order of arrival among equals
        if not self.waiting:
            return None, []
        lang = self.waiting[0].lang
        queue = [p for p in self.waiting if p.lang == lang]
        chosen: list[tuple[Pending, int]] = []
        chars, full = 0, False
        while not full and len(chosen) < self.max_batch and any(p.sent < len(p.texts) for p in queue):
            for pending in queue:
                if pending.sent >= len(pending.texts):
                    continue
                text_chars = size(pending.texts[pending.sent])
                if len(chosen) >= self.max_batch or (
                    chosen and self.max_chars is not None and chars + text_chars > self.max_chars
                ):
                    full = True
                    break
                chosen.append((pending, pending.sent))
                pending.sent += 1
                chars += text_chars
        self.calls += 1
        for pending, _ in chosen:
            pending.served = self.calls
        return lang, chosen

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.waiting:
                self.arrived.clear()
                await self.arrived.wait()
                await asyncio.sleep(self.wait_s)  # company for the first request
            lang, chosen = self.take()
            if chosen:
                await self._answer(loop, lang, chosen)

    async def _answer(self, loop: Any, lang: str | None, chosen: list[tuple[Pending, int]]) -> None:
        """One model call for the chosen texts; if it fails, each text alone, so that a bad one fails only its
        request."""
        texts = [pending.texts[i] for pending, i in chosen]
        try:
            records = await loop.run_in_executor(None, self.predictor, texts, lang, self.max_batch)
        except Exception as err:  # noqa: BLE001 - answered per text below
            if len(chosen) > 1:
                for one in chosen:
                    await self._answer(loop, lang, [one])
            elif not chosen[0][0].future.done():
                chosen[0][0].future.set_exception(err)
            return
        for (pending, i), record in zip(chosen, records):
            pending.records[i] = record
            if not pending.future.done() and all(r is not None for r in pending.records):
                pending.future.set_result(pending.records)
