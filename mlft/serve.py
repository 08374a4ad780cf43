"""`mlft serve model=<exported folder> port=8080`: an HTTP JSON API over a saved or exported model.

POST /predict {"texts": [...], "lang": "zh"} -> {"predictions": [...]} (the records of `mlft predict`)
GET  /health                                -> {"status": "ok", "task": ..., "labels": [...]}

Requests that arrive together are answered by one model call (up to `max_batch` texts, waiting at
most `batch_wait_ms` for company), and one model call runs at a time. Sizes are checked before any
work: too many texts or too long a text is a 413, a malformed body a 422, each with a message.
"""

# No `from __future__ import annotations`: FastAPI reads the request model from the handler's real annotation.
import asyncio
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

from mlft.errors import ConfigError
from mlft.predict import Predictor, load_for_prediction
from mlft.runs import parse_args

LANG = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


@dataclass
class ServeArgs:
    model: str | None = None
    """A folder written by `mlft export` (or its model.onnx)."""
    run: str | None = None
    """Instead of model: a run directory."""
    host: str = "127.0.0.1"
    port: int = 8080
    max_texts: int = 64
    """Texts per request."""
    max_chars: int = 5000
    """Characters per text (longer NER inputs are windowed, but requests stay bounded)."""
    max_batch: int = 64
    """Texts per model call, across the requests that arrive together."""
    batch_wait_ms: float = 5.0
    """How long the first request of a batch waits for others."""
    cpu: bool = False
    precision: Literal["run", "no", "bf16"] = "run"
    """Autocast of the model call, as in `mlft predict`."""


class Batcher:
    """Collects concurrent requests into model calls; one call at a time, off the event loop."""

    def __init__(self, predictor: Predictor, max_batch: int, wait_s: float):
        self.predictor, self.max_batch, self.wait_s = predictor, max_batch, wait_s
        self.queue: asyncio.Queue[tuple[list[str], str | None, asyncio.Future]] = asyncio.Queue()

    async def submit(self, texts: list[str], lang: str | None) -> list[dict[str, Any]]:
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        await self.queue.put((texts, lang, future))
        return await future

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            size, deadline = len(batch[0][0]), loop.time() + self.wait_s
            while size < self.max_batch and (timeout := deadline - loop.time()) > 0:
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), timeout))
                except TimeoutError:
                    break
                size += len(batch[-1][0])
            for lang in dict.fromkeys(item[1] for item in batch):
                group = [item for item in batch if item[1] == lang]
                lines = [text for texts, _, _ in group for text in texts]
                try:
                    records = await loop.run_in_executor(None, self.predictor, lines, lang, self.max_batch)
                except Exception as err:  # answered as a 500 to every request of the group
                    for _, _, future in group:
                        future.set_exception(err)
                    continue
                start = 0
                for texts, _, future in group:
                    future.set_result(records[start : start + len(texts)])
                    start += len(texts)


def build_app(predictor: Predictor, args: ServeArgs) -> Any:
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel

    class PredictRequest(BaseModel):
        texts: list[str]
        lang: str | None = None

    batcher = Batcher(predictor, args.max_batch, args.batch_wait_ms / 1000)
    max_body = args.max_texts * (args.max_chars * 4 + 16) + 1024  # UTF-8 and JSON quoting included

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(batcher.run())
        yield
        task.cancel()

    app = FastAPI(title="mlft", lifespan=lifespan)

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Any) -> Any:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_body):
            return JSONResponse({"detail": f"request body over {max_body} bytes"}, status_code=413)
        return await call_next(request)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        saved = predictor.saved
        return {"status": "ok", "task": saved.config.task.type, "labels": saved.task.labels}

    @app.post("/predict")
    async def predict(body: PredictRequest) -> dict[str, Any]:
        if not body.texts:
            raise HTTPException(422, "texts: give at least one text")
        if len(body.texts) > args.max_texts:
            raise HTTPException(413, f"texts: at most {args.max_texts} per request, got {len(body.texts)}")
        for i, text in enumerate(body.texts):
            if len(text) > args.max_chars:
                raise HTTPException(413, f"texts[{i}]: {len(text)} characters; the limit is {args.max_chars}")
        if body.lang is not None and not LANG.match(body.lang):
            raise HTTPException(422, f"lang: {body.lang!r} is not a language code (e.g. zh, en, pt-BR)")
        return {"predictions": await batcher.submit(body.texts, body.lang)}

    return app


def serve_cli(argv: list[str]) -> None:
    args: ServeArgs = parse_args(argv, ServeArgs, "serve")
    try:
        import uvicorn
    except ImportError:
        raise ConfigError("mlft serve needs fastapi and uvicorn: pip install 'mlft[serve]'") from None
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"port: must be in 0..65535, got {args.port}")
    if min(args.max_texts, args.max_chars, args.max_batch) < 1:
        raise ConfigError("max_texts, max_chars, max_batch: must be at least 1")
    predictor = Predictor(load_for_prediction(args.run, args.model), args.cpu, False, args.precision)
    print(f"mlft serve: http://{args.host}:{args.port} (POST /predict, GET /health)", file=sys.stderr, flush=True)
    uvicorn.run(build_app(predictor, args), host=args.host, port=args.port, log_level="warning")
