"""`mlft serve model=<exported folder> port=8080`: an HTTP JSON API over a saved or exported model.

POST /predict {"texts": [...], "lang": "zh"} -> {"predictions": [...]} (the records of `mlft predict`)
POST /predict {"records": [{"question": ..., "context": ...}]}  (objects of the task's fields, as .jsonl input)
GET  /health                                -> {"status": "ok", "task": ..., "labels": [...]}

Requests that arrive together share model calls (up to `max_batch` texts and `max_call_chars` characters, the first
waiting at most `batch_wait_ms` for company), one call at a time, taking the texts of the waiting requests in turn:
a small request beside a maximal one waits for the call in flight and its own, not for all of it
(mlft/commands/batcher.py); the work of a client that went away is dropped. Sizes are checked before any work:
too many texts or too long a text is a 413, a malformed body a 422, each with a message.
"""

# No `from __future__ import annotations`: FastAPI reads the request model from the handler's real annotation.
import asyncio
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from mlft.commands.arguments import ServeArgs
from mlft.commands.batcher import Batcher
from mlft.commands.predict import LANG, Predictor, Request, load_for_prediction, read_all
from mlft.data.readers import lone_surrogate
from mlft.errors import ConfigError, DataError

DISCONNECT_POLL_S = 0.1
"""How often a request waiting for its answer checks that its client is still there."""


class BodyLimit:
    """ASGI middleware: reads a request body up to `max_bytes` as it arrives, with or without Content-Length.

    A chunked upload is counted while it is read, so an oversized one is refused after `max_bytes`, not
    after all of it was buffered and parsed; a body that does not arrive within `timeout_s` gets a 408
    (a slow client holds only its own connection).
    """

    def __init__(self, app: Any, max_bytes: int, timeout_s: float):
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await _reply(send, 413, f"request body over {self.max_bytes} bytes")
            return
        chunks, size = [], 0
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        while True:
            try:
                message = await asyncio.wait_for(receive(), deadline - asyncio.get_running_loop().time())
            except asyncio.TimeoutError:
                await _reply(send, 408, f"request body not received within {self.timeout_s:g} s")
                return
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await _reply(send, 413, f"request body over {self.max_bytes} bytes")
                return
            if not message.get("more_body", False):
                break
        body, delivered = b"".join(chunks), False

        async def replay() -> dict:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def _reply(send: Any, status: int, detail: str) -> None:
    payload = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + [(b"connection", b"close")]})
    await send({"type": "http.response.body", "body": payload})


def build_app(predictor: Predictor, args: ServeArgs) -> Any:
    from fastapi import FastAPI, HTTPException
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel
    from starlette.requests import Request as HTTPRequest

    class PredictRequest(BaseModel):
        texts: list[str] | None = None
        records: list[dict[str, Any]] | None = None
        lang: str | None = None

    batcher = Batcher(predictor, args.max_batch, args.batch_wait_ms / 1000, args.max_call_chars)
    # A character is at most 12 bytes of JSON (a character beyond the BMP as two \\uXXXX escapes, as json.dumps
    # writes it), plus a record's keys and quoting.
    max_body = args.max_texts * (args.max_chars * 12 + 256) + 1024

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(batcher.run())
        yield
        task.cancel()

    app = FastAPI(title="mlft", lifespan=lifespan)
    app.add_middleware(BodyLimit, max_bytes=max_body, timeout_s=args.body_timeout_s)

    @app.exception_handler(RequestValidationError)
    async def malformed(_: Any, err: RequestValidationError) -> JSONResponse:
        """A 422 naming each bad field. FastAPI's own answer echoes the input, which a lone surrogate or a NaN
        (both valid to Python's JSON reader) makes unwritable: a 500 instead."""
        problems = []
        for error in err.errors():
            where = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"
            message = str(error.get("msg", "invalid")).encode("utf-8", "backslashreplace").decode()
            problems.append(f"{where}: {message}")
        return JSONResponse({"detail": "; ".join(problems)}, status_code=422)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        saved = predictor.saved
        return {"status": "ok", "task": saved.task.name, "labels": saved.task.labels}

    @app.post("/predict")
    async def predict(body: PredictRequest, connection: HTTPRequest) -> dict[str, Any]:
        if (body.texts is None) == (body.records is None):
            raise HTTPException(
                422, 'texts, records: give one: "texts" (lines of text) or "records" (objects of the task\'s fields)'
            )
        key = "texts" if body.texts is not None else "records"
        requests: list[Request] = list(body.texts if body.texts is not None else body.records or [])
        if not requests:
            raise HTTPException(422, f"{key}: give at least one")
        if len(requests) > args.max_texts:
            raise HTTPException(413, f"{key}: at most {args.max_texts} per request, got {len(requests)}")
        for i, request in enumerate(requests):
            strings = [request] if isinstance(request, str) else [v for v in request.values() if isinstance(v, str)]
            if sum(map(len, strings)) > args.max_chars:
                size = sum(map(len, strings))
                raise HTTPException(413, f"{key}[{i}]: {size} characters; the limit is {args.max_chars}")
            problem = next(filter(None, map(lone_surrogate, strings)), None)
            if problem:
                raise HTTPException(422, f"{key}[{i}]: {problem}")
        if body.lang is not None and not LANG.match(body.lang):
            raise HTTPException(422, f"lang: {body.lang!r} is not a language code (e.g. zh, en, pt-BR)")
        try:  # what the task cannot read fails this request alone, before it joins a batch
            read_all(predictor.saved.task, requests, body.lang or predictor.default_lang, lambda i: f"{key}[{i}]")
        except DataError as err:
            raise HTTPException(422, "; ".join(err.problems)) from None
        answer = asyncio.ensure_future(batcher.submit(requests, body.lang))
        while not (await asyncio.wait({answer}, timeout=DISCONNECT_POLL_S))[0]:
            if await connection.is_disconnected():  # nobody to answer: its texts not predicted yet are dropped
                answer.cancel()
                raise HTTPException(499, "client closed the connection")
        return {"predictions": answer.result()}

    return app


def serve(args: ServeArgs) -> None:
    """Serves the model until stopped (arguments checked by mlft.commands.preflight.check_serve)."""
    try:
        import uvicorn
    except ImportError:
        raise ConfigError("mlft serve needs fastapi and uvicorn: pip install 'mlft[serve]'") from None
    predictor = Predictor(load_for_prediction(args.run, args.model, args.runs), args.cpu, False, args.precision)
    print(f"mlft serve: http://{args.host}:{args.port} (POST /predict, GET /health)", file=sys.stderr, flush=True)
    uvicorn.run(build_app(predictor, args), host=args.host, port=args.port, log_level="warning")
