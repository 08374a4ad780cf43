"""Bounded load on a local `mlft serve`: requests/s and p50/p99 latency at several concurrency levels.

    python scripts/serve_load.py --url http://127.0.0.1:8080 --input texts.txt --requests 200 --concurrency 1,8,32

Loopback only: the script refuses any other host. Each request sends `--texts-per-request` lines of the input.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def post(url: str, texts: list[str]) -> tuple[float, bool]:
    """Latency in seconds and whether the answer was a 200."""
    body = json.dumps({"texts": texts}).encode()
    request = urllib.request.Request(f"{url}/predict", body, {"Content-Type": "application/json"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            json.load(response)
    except urllib.error.HTTPError as err:
        print(f"HTTP {err.code}: {err.read()[:200]!r}", file=sys.stderr)
        return time.perf_counter() - start, False
    return time.perf_counter() - start, True


def level(url: str, batches: list[list[str]], concurrency: int) -> dict[str, float]:
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda texts: post(url, texts), batches))
    wall = time.perf_counter() - start
    latencies = sorted(latency for latency, _ in results)
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    return {
        "concurrency": concurrency,
        "requests": len(batches),
        "errors": sum(not ok for _, ok in results),
        "requests_per_s": len(batches) / wall,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": p99 * 1000,
    }


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--input", required=True, help="text file, one text per line")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--texts-per-request", type=int, default=1)
    parser.add_argument("--concurrency", default="1,8,32")
    args = parser.parse_args(argv)
    if urlparse(args.url).hostname not in LOOPBACK:
        parser.error(f"--url must point to this machine ({', '.join(sorted(LOOPBACK))})")
    if not Path(args.input).is_file():
        parser.error(f"--input: file not found: {args.input}")
    with open(args.input, encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f if line.strip()]
    if not lines:
        parser.error(f"{args.input}: no non-empty lines")
    k = args.texts_per_request
    batches = [[lines[(i * k + j) % len(lines)] for j in range(k)] for i in range(args.requests)]
    post(args.url, batches[0])  # warm-up
    rows = [level(args.url, batches, int(c)) for c in args.concurrency.split(",")]
    print("| concurrency | requests | errors | requests/s | p50 ms | p99 ms |\n|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        timings = [f"{r[k]:.1f}" for k in ("requests_per_s", "p50_ms", "p99_ms")]
        cells = [f"{r['concurrency']}", f"{r['requests']}", f"{r['errors']}", *timings]
        print("| " + " | ".join(cells) + " |")
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
