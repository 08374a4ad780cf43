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
        [sys.executable, "-m", "mlft", "serve", f"run={ner_run}", f"port={port}", "max_texts=8", "max_chars=300"],
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
