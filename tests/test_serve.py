"""`mlft serve`: a real server on 127.0.0.1, batched answers equal to `mlft predict`, clear 4xx errors."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import FIXTURES, ROOT

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'mlft[serve]'")
TEXTS = [line for line in (FIXTURES / "zh_texts.txt").read_text().splitlines()]
BODY_TIMEOUT_S = 3
MAX_BODY = 8 * (300 * 12 + 256) + 1024  # what max_texts=8 and max_chars=300 allow (mlft.serve.build_app)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url: str, payload: bytes | None = None, content_type: str = "application/json") -> tuple[int, dict]:
    request = urllib.request.Request(url, payload, {"Content-Type": content_type} if payload is not None else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


@pytest.fixture(scope="module")
def server(ner_run):
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlft",
            "serve",
            f"run={ner_run}",
            f"port={port}",
            "max_texts=8",
            "max_chars=300",
            f"body_timeout_s={BODY_TIMEOUT_S}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            if call(f"{url}/health")[0] == 200:
                break
        except OSError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail(f"server did not start:\n{process.stdout.read()}")
    yield url
    process.terminate()
    process.wait(timeout=30)


def test_health_names_the_task_and_labels(server):
    status, body = call(f"{server}/health")
    assert status == 200 and body["task"] == "token_classification" and "B-PER" in body["labels"]


def test_concurrent_requests_get_the_same_answers_as_mlft_predict(server, ner_run, tmp_path):
    from mlft.cli import main

    output = tmp_path / "preds.jsonl"
    short = [t for t in TEXTS if len(t) <= 300]
    (tmp_path / "in.txt").write_text("\n".join(short) + "\n")
    main(["predict", f"run={ner_run}", f"input={tmp_path / 'in.txt'}", f"output={output}"])
    expected = [json.loads(line) for line in output.read_text().splitlines()]

    def one(i: int) -> tuple[int, dict]:
        return call(f"{server}/predict", json.dumps({"texts": [short[i % len(short)]]}).encode())

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(24)))
    assert all(status == 200 for status, _ in answers)
    assert [body["predictions"][0] for _, body in answers] == [expected[i % len(short)] for i in range(24)]


@pytest.mark.parametrize(
    "payload,status,fragment",
    [
        (b'{"texts": "not a list"}', 422, "texts"),
        (b'{"texts": [1, 2]}', 422, "texts"),
        (b'{"texts": []}', 422, "at least one"),
        (b"{not json", 422, ""),
        (json.dumps({"texts": ["x"] * 9}).encode(), 413, "at most 8"),
        (json.dumps({"texts": ["x" * 301]}).encode(), 413, "limit is 300"),
        (json.dumps({"texts": ["x"], "lang": "../etc"}).encode(), 422, "language code"),
        (json.dumps({"texts": ["x" * 300] * 8 + ["y" * 100000]}).encode(), 413, "request body over"),
        (b'{"texts": ["a", ["b\\ud800"]]}', 422, "texts.1: Input should be a valid string"),
        (b'{"texts": [["\\udc00"]]}', 422, "texts.0"),
        (b'{"texts": [NaN]}', 422, "texts.0"),
        (b'{"texts": ["a"], "lang": Infinity}', 422, "lang"),
        (b'{"records": [{"text": NaN}]}', 422, "records[0]: expected"),
    ],
)
def test_bad_requests_get_clear_4xx_errors(server, payload, status, fragment):
    got, body = call(f"{server}/predict", payload)
    assert got == status and fragment in json.dumps(body)
    assert call(f"{server}/health")[0] == 200  # and the server keeps serving


def test_the_load_script_reports_throughput_and_latency(server, tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "scripts"))
    import serve_load

    (tmp_path / "in.txt").write_text("\n".join(t for t in TEXTS if len(t) <= 300) + "\n")  # within max_chars
    rows = serve_load.main(
        ["--url", server, "--input", str(tmp_path / "in.txt"), "--requests", "16", "--concurrency", "1,8"]
    )
    assert [r["concurrency"] for r in rows] == [1, 8] and all(r["requests_per_s"] > 0 for r in rows)
    assert all(r["errors"] == 0 for r in rows)
    assert "| concurrency |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        serve_load.main(["--url", "http://example.com:80", "--input", str(tmp_path / "in.txt")])


def test_a_lone_surrogate_is_a_422_naming_its_index(server):
    # "\\ud800" is valid JSON, but the text it decodes to is not Unicode and cannot be tokenized.
    status, body = call(f"{server}/predict", b'{"texts": ["\xe5\xbc\xa0\xe4\xbc\x9f", "a\\ud800b"]}')
    assert status == 422 and "texts[1]" in body["detail"] and "surrogate" in body["detail"]


def test_bad_texts_mixed_into_concurrent_requests_fail_only_themselves(server, ner_run):
    short = [t for t in TEXTS if len(t) <= 300]
    expected = {}
    for text in short:
        status, body = call(f"{server}/predict", json.dumps({"texts": [text]}).encode())
        assert status == 200
        expected[text] = body["predictions"][0]
    bad = b'{"texts": ["\\udfff"]}'

    def one(i: int) -> tuple[int, dict]:
        if i % 5 == 2:
            return call(f"{server}/predict", bad)
        return call(f"{server}/predict", json.dumps({"texts": [short[i % len(short)]]}).encode())

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, range(40)))
    for i, (status, body) in enumerate(answers):
        if i % 5 == 2:
            assert status == 422 and "texts[0]" in body["detail"]
        else:
            assert status == 200 and body["predictions"] == [expected[short[i % len(short)]]], (i, status, body)


def test_a_failing_model_call_fails_only_the_request_that_caused_it():
    import asyncio

    from mlft.commands.serve import Batcher

    def predictor(lines: list[str], lang: str | None, batch_size: int) -> list[dict]:
        if "boom" in lines:
            raise RuntimeError("cannot predict 'boom'")
        return [{"text": line} for line in lines]

    async def scenario() -> list:
        batcher = Batcher(predictor, max_batch=64, wait_s=0.05)  # type: ignore[arg-type]
        worker = asyncio.create_task(batcher.run())
        requests = [["a"], ["boom"], ["b", "c"], ["d"]]
        results = await asyncio.gather(*(batcher.submit(r, None) for r in requests), return_exceptions=True)
        worker.cancel()
        return results

    results = asyncio.run(scenario())
    assert results[0] == [{"text": "a"}] and results[2] == [{"text": "b"}, {"text": "c"}]
    assert results[3] == [{"text": "d"}] and isinstance(results[1], RuntimeError)


def test_a_small_request_beside_a_big_one_waits_for_one_model_call_and_a_gone_client_costs_nothing():
    """The scheduler, on a predictor that records its calls: a big request is split over calls of at most
    max_chars characters; a small one that arrives meanwhile is in the next call; a cancelled request (its client
    went away) has its texts not yet predicted dropped."""
    import asyncio
    import time as clock

    from mlft.commands.batcher import Batcher

    calls: list[list[str]] = []

    def predictor(lines: list[str], lang: str | None, batch_size: int) -> list[dict]:
        calls.append(lines)
        clock.sleep(0.05)  # a model call's time
        return [{"text": line} for line in lines]

    async def scenario() -> tuple[list, int]:
        batcher = Batcher(predictor, max_batch=64, wait_s=0.001, max_chars=100)  # type: ignore[arg-type]
        worker = asyncio.create_task(batcher.run())
        big = asyncio.create_task(batcher.submit([f"b{i:02d}" + "x" * 96 for i in range(20)], None))  # 20 calls
        await asyncio.sleep(0.12)  # two calls in
        at = len(calls)  # calls started when the small request arrives (the last one still running)
        small = await batcher.submit(["small"], None)
        gone = asyncio.create_task(batcher.submit([f"g{i}" + "y" * 98 for i in range(20)], None))
        await asyncio.sleep(0.12)
        gone.cancel()
        await big
        worker.cancel()
        return small, at

    small, at = asyncio.run(scenario())
    assert small == [{"text": "small"}]
    assert "small" in calls[at]  # the next call, not after the big request's 18 others
    assert all(sum(len(t) for t in c) <= 100 or len(c) == 1 for c in calls)
    predicted_gone = [t for c in calls for t in c if t.startswith("g")]
    assert 0 < len(predicted_gone) < 20  # some of it ran before the client left, the rest never did


def _raw(server: str) -> socket.socket:
    host, port = server.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def _status(sock: socket.socket) -> int:
    head = b""
    while b"\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return int(head.split(b" ")[1])


def test_a_chunked_upload_is_refused_once_it_passes_the_byte_limit(server):
    import threading

    sent = 0
    sock = _raw(server)
    sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
    sock.sendall(b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b'{"texts": ["' + b"x" * 65536
    stop = threading.Event()

    def upload() -> None:  # up to 50 MB, unless the server answers and closes first
        nonlocal sent
        try:
            while sent < 50_000_000 and not stop.is_set():
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except OSError:
            pass

    thread = threading.Thread(target=upload)
    thread.start()
    try:
        status = _status(sock)
    finally:
        stop.set()
        thread.join(timeout=30)
        sock.close()
    assert status == 413
    assert sent < 50_000_000  # answered long before the whole body was sent
    assert call(f"{server}/health")[0] == 200


def test_a_slow_client_does_not_block_others_and_times_out(server):
    sock = _raw(server)
    sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n")
    sock.sendall(b'{"texts": ["')  # ... and the rest never comes
    start = time.monotonic()
    status, body = call(f"{server}/predict", json.dumps({"texts": [TEXTS[0][:300]]}).encode())
    assert status == 200 and time.monotonic() - start < BODY_TIMEOUT_S  # served while the slow body is pending
    assert _status(sock) == 408
    sock.close()


def test_the_largest_request_the_limits_allow_is_served_even_ascii_escaped(server):
    """8 texts of 300 characters (the server's limits), Chinese and a character beyond the BMP written as json.dumps
    writes them by default (\\\\uXXXX, up to 12 bytes a character): no 413, no reset connection."""
    texts = [("张伟在北京工作。" * 40)[:299] + "\U0001f600"] * 8
    status, body = call(f"{server}/predict", json.dumps({"texts": texts}).encode())
    assert status == 200 and len(body["predictions"]) == 8


def test_the_fairness_script_times_an_innocent_request_beside_maximal_and_abandoned_ones(server):
    import importlib.util

    spec = importlib.util.spec_from_file_location("serve_fairness", ROOT / "scripts" / "serve_fairness.py")
    serve_fairness = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(serve_fairness)
    args = ["--url", server, "--input", str(FIXTURES / "zh_texts.txt"), "--max-texts", "8", "--max-chars", "300"]
    results = serve_fairness.main(args)
    assert set(results) == {"alone_s", "beside_maximal_s", "maximal_s", "after_three_abandoned_s"}
    assert call(f"{server}/health")[0] == 200
