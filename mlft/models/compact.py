"""Training only the embedding rows a run's data uses, written back into the full matrix at the end.

A multilingual vocabulary is most of the model: multilingual-e5-small has 250,037 rows × 384 = 96M of its
117M parameters, while one run's data uses a few thousand rows. Trained densely, that matrix costs a dense
gradient and two AdamW moments (1.1 GB more memory) and most of the optimizer's time on a CPU, although rows
the data never feeds get a zero gradient (dense AdamW only decays them). So a run trains a compact matrix of
the rows its train, dev and test data use and puts them back into the pretrained matrix when it saves the
final model: the saved model has the full vocabulary, and on the run's data it computes exactly what the
compact one did.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mlft.errors import RunDirError
from mlft.models.trim import used_ids


@dataclass
class CompactVocab:
    old_ids: list[int]
    """The full vocabulary's ids that are kept, in order: compact id i is old_ids[i]."""
    full: torch.Tensor
    """The pretrained full embedding matrix (its rows outside old_ids are saved unchanged)."""
    padding_idx: int | None
    """The full embedding's padding row."""

    def new_ids(self) -> dict[int, int]:
        return {old: new for new, old in enumerate(self.old_ids)}


def kept_ids(tokenizer: Any, id_lists: Iterable[list[int]]) -> list[int]:
    """The ids the run feeds the model plus those trimming keeps (special and added tokens, the aligner's
    probes); every id up to the padding id is kept too, so padding keeps its id (XLM-R-style embeddings
    derive position ids from `input_ids != padding id`)."""
    return sorted(used_ids(tokenizer, id_lists) | set(range(tokenizer.pad_token_id + 1)))


def supports(model: Any) -> bool:
    """A model whose output layer shares the input embeddings (masked LM heads) needs every row."""
    return model.get_output_embeddings() is None


def compact(model: Any, old_ids: list[int]) -> CompactVocab:
    """Replaces the model's input embeddings by the rows `old_ids` (in place); returns what expand needs."""
    embeddings = model.get_input_embeddings()
    full = embeddings.weight.detach()
    vocab = CompactVocab(old_ids, full, embeddings.padding_idx)
    new_id = vocab.new_ids()
    rows = torch.nn.Embedding(
        len(old_ids), full.shape[1], padding_idx=None if vocab.padding_idx is None else new_id[vocab.padding_idx]
    )
    rows.weight.data.copy_(full[torch.tensor(old_ids)])
    rows.weight.requires_grad_(embeddings.weight.requires_grad)
    model.set_input_embeddings(rows)
    model.config.vocab_size = len(old_ids)
    return vocab


def remap(features: list[dict[str, Any]], new_id: dict[int, int]) -> None:
    """Rewrites the features' input ids into compact ids (in place)."""
    for feature in features:
        feature["input_ids"] = [new_id[i] for i in feature["input_ids"]]


def expand(model: Any, vocab: CompactVocab) -> None:
    """Puts the trained rows back into the full matrix and the full matrix back into the model (in place)."""
    rows = model.get_input_embeddings().weight.detach()
    # The pretrained matrix was kept where the model was loaded (the CPU); the trained rows are where the model
    # trained (a GPU): the full matrix joins them there, so the whole model stays on one device.
    full = vocab.full.to(rows.device, copy=True)
    full[torch.tensor(vocab.old_ids, device=rows.device)] = rows.to(full.dtype)
    model.set_input_embeddings(torch.nn.Embedding.from_pretrained(full, freeze=False, padding_idx=vocab.padding_idx))
    model.config.vocab_size = full.shape[0]


ROWS_FILE = "embedding_rows.json"
"""In checkpoints/: the kept ids, so a resumed run can check that its data still selects the same rows."""


def record(checkpoints: Path, vocab: CompactVocab, resuming: bool, main_process: bool) -> None:
    """Writes the kept ids next to the checkpoints; on resume, refuses data that selects other rows."""
    path = checkpoints / ROWS_FILE
    if resuming and path.is_file():
        stored = json.loads(path.read_text())
        if stored != vocab.old_ids:
            raise RunDirError(
                f"resume: the checkpoints in {checkpoints} train {len(stored)} embedding rows, the data and "
                f"tokenizer now select {len(vocab.old_ids)} (or other ones): resume with the data the run started with"
            )
    elif main_process:
        checkpoints.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(vocab.old_ids))
