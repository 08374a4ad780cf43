"""One training step of multilingual-e5-small on CPU with each AdamW implementation: where the fused kernel pays.

    python scripts/bench_optimizer.py [--rounds 2] [--steps 10]

Frozen word embeddings (as in `make demo`), a random batch of 16 × 42 tokens. For each implementation (the
default per-tensor loop, foreach, fused) it prints the mean forward+backward time and the mean optimizer step
time over --steps steps after 3 warm-up steps; the implementations alternate for --rounds rounds so machine
noise hits all of them alike.
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import AutoModelForTokenClassification

from mlft.models.cache import converted_model

IMPLEMENTATIONS = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_pretrained(converted_model(), num_labels=7)
    model.get_input_embeddings().weight.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    ids, labels = torch.randint(1000, 20000, (16, 42)), torch.randint(0, 7, (16, 42))
    model.train()
    for _ in range(args.rounds):
        for name, options in IMPLEMENTATIONS.items():
            optimizer = torch.optim.AdamW(params, lr=1e-4, **options)
            forward_backward = step = 0.0
            for i in range(3 + args.steps):
                start = time.perf_counter()
                model(input_ids=ids, labels=labels).loss.backward()
                middle = time.perf_counter()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if i >= 3:
                    forward_backward += middle - start
                    step += time.perf_counter() - middle
            print(
                f"{name:8s} forward+backward {forward_backward / args.steps * 1000:.0f} ms  "
                f"optimizer step {step / args.steps * 1000:.1f} ms",
                flush=True,
            )


if __name__ == "__main__":
    main()
