"""How long an innocent request waits beside maximal ones on a local `mlft serve` (docs/results/export.md).

    python scripts/serve_fairness.py --url http://127.0.0.1:8080 --input texts.txt

Three measurements, each an innocent request of two texts timed alone first:
1. beside one maximal request (--max-texts texts of --max-chars characters) sent a second before it;
2. after three maximal requests whose clients went away a second after sending them (their work must stop);
3. the maximal request itself, for scale.
Loopback only: the script refuses any other host.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def post(url: str, texts: list[str]) -> float:
    """Seconds until the answer (a 200 expected)."""
    body = json.dumps({"texts": texts}).encode()  # json.dumps escapes non-ASCII: the largest body for the text
    request = urllib.request.Request(f"{url}/predict", body, {"Content-Type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=3600) as response:
        json.load(response)
    return time.perf_counter() - start


def abandon(url: str, texts: list[str], after_s: float) -> None:
    """Sends a request and closes the connection before the answer comes."""
    parts = urlparse(url)
    body = json.dumps({"texts": texts}).encode()
    with socket.create_connection((parts.hostname, parts.port or 80)) as sock:
        head = f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
        sock.sendall(head.encode() + b"\r\n\r\n" + body)
        time.sleep(after_s)


def maximal(lines: list[str], texts: int, chars: int) -> list[str]:
    """`texts` texts of exactly `chars` characters, made of the input's lines."""
    joined = "".join(lines)
    text = (joined * (chars // max(len(joined), 1) + 1))[:chars]
    return [text] * texts


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--input", required=True, help="text file, one text per line")
    parser.add_argument("--max-texts", type=int, default=64, help="the server's max_texts")
    parser.add_argument("--max-chars", type=int, default=5000, help="the server's max_chars")
    args = parser.parse_args(argv)
    if urlparse(args.url).hostname not in LOOPBACK:
        parser.error(f"--url {args.url}: only a server on this machine (127.0.0.1)")
    lines = [line for line in Path(args.input).read_text().splitlines() if line.strip()]
    innocent, big = lines[:2], maximal(lines, args.max_texts, args.max_chars)
    results = {"alone_s": post(args.url, innocent)}

    done: dict[str, float] = {}
    worker = threading.Thread(target=lambda: done.update(big_s=post(args.url, big)))
    worker.start()
    time.sleep(1.0)
    results["beside_maximal_s"] = post(args.url, innocent)
    worker.join()
    results["maximal_s"] = done["big_s"]

    leavers = [threading.Thread(target=abandon, args=(args.url, big, 1.0)) for _ in range(3)]
    for thread in leavers:
        thread.start()
    for thread in leavers:
        thread.join()
    results["after_three_abandoned_s"] = post(args.url, innocent)
    for key, value in results.items():
        print(f"{key}: {value:.2f}")
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
