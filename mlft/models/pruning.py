"""Structured pruning: whole attention heads and feed-forward neurons removed by their importance.

A unit's importance is Michel et al. (2019)'s: the expected absolute gradient of the loss with respect to a gate
that multiplies the unit's output (1 while scoring, so the model computes what it always does), over training
batches of the model already fine-tuned for the task. Scores are normalised per layer (L2), ranked over the
whole model, and the lowest share removed; every layer keeps at least one head and one neuron.

Removal slices the Linear layers themselves (query/key/value rows and the attention output's columns of a head;
the intermediate layer's rows and the output layer's columns of a neuron), so the model is really smaller and
faster. transformers 5 has no `prune_heads` and its config cannot say that layers differ in size, so a pruned
model records its per-layer sizes in config.json (`mlft_pruned`) and mlft's loaders cut a freshly built model
to those sizes before reading the cut layers' weights (`mlft.models.rebuild`). Plain transformers cannot load
such a folder (it stops at the first size mismatch); its ONNX export runs anywhere.

Layout: BERT-style blocks (`attention.self.query/key/value`, `attention.output.dense`, `intermediate.dense`,
`output.dense`): BERT, RoBERTa, XLM-R, ELECTRA, CamemBERT and the multilingual-e5 models.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from mlft.errors import ConfigError, RunDirError
from mlft.models.freeze import encoder_layers

PRUNED_KEY = "mlft_pruned"
"""The config.json entry of a pruned model: {"heads": [per layer], "neurons": [per layer]}."""


@dataclass
class Block:
    """The Linear layers of one transformer block that pruning cuts."""

    layer: Any
    attention: Any
    """The self-attention module (query, key, value and its head counts)."""
    out: torch.nn.Linear
    """The attention output projection: its inputs are the heads' outputs side by side."""
    up: torch.nn.Linear
    down: torch.nn.Linear
    """The feed-forward layers: `up` makes the neurons, `down` reads them."""

    @property
    def head_size(self) -> int:
        return int(self.attention.attention_head_size)

    @property
    def heads(self) -> int:
        return self.out.in_features // self.head_size

    @property
    def neurons(self) -> int:
        return self.up.out_features


def blocks(model: torch.nn.Module, key: str) -> list[Block]:
    """The model's blocks; a ConfigError naming `key` for a layout that pruning does not know."""
    found = []
    layer: Any
    for layer in encoder_layers(model, key):
        try:
            block = Block(
                layer,
                layer.attention.self,
                layer.attention.output.dense,
                layer.intermediate.dense,
                layer.output.dense,
            )
        except AttributeError:
            block = None
        if block is None or not all(isinstance(m, torch.nn.Linear) for m in (block.out, block.up, block.down)):
            model_type = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
            raise ConfigError(
                f"{key}: needs BERT-style blocks (bert, roberta, xlm-roberta, electra, camembert), not {model_type}"
            )
        found.append(block)
    return found


def importance(model: torch.nn.Module, batches: Iterable[dict[str, torch.Tensor]]) -> tuple[list[torch.Tensor], ...]:
    """Per layer, the head scores and the neuron scores: the summed |∂loss/∂gate| over `batches`, the model
    scored without dropout and left unchanged."""
    found = blocks(model, "prune")
    device = next(model.parameters()).device
    head_gates = [torch.ones(b.heads, device=device, requires_grad=True) for b in found]
    neuron_gates = [torch.ones(b.neurons, device=device, requires_grad=True) for b in found]
    head_scores = [torch.zeros(b.heads) for b in found]
    neuron_scores = [torch.zeros(b.neurons) for b in found]
    handles = []
    for block, heads, neurons in zip(found, head_gates, neuron_gates, strict=True):
        handles.append(block.out.register_forward_pre_hook(_gate_heads(heads, block.head_size)))
        handles.append(block.down.register_forward_pre_hook(_gate_neurons(neurons)))
    was_training = model.training
    model.eval()
    count = 0
    try:
        for batch in batches:
            loss = model(**{k: v.to(device) for k, v in batch.items()}).loss
            grads = torch.autograd.grad(loss, head_gates + neuron_gates)
            for score, grad in zip(head_scores + neuron_scores, grads, strict=True):
                score += grad.detach().abs().float().cpu()
            count += 1
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if count == 0:
        raise ValueError("no batches to score the heads and neurons on")
    return head_scores, neuron_scores


def _gate_heads(gate: torch.Tensor, head_size: int) -> Callable[..., Any]:
    def hook(_module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        context = args[0]
        shaped = context.view(*context.shape[:-1], -1, head_size) * gate.to(context.dtype)[:, None]
        return (shaped.view(context.shape), *args[1:])

    return hook


def _gate_neurons(gate: torch.Tensor) -> Callable[..., Any]:
    def hook(_module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (args[0] * gate.to(args[0].dtype), *args[1:])

    return hook


def choose(scores: list[torch.Tensor], share: float) -> list[list[int]]:
    """The units each layer keeps (sorted indices) when the lowest `share` of all units goes, scores normalised
    per layer; at least one unit per layer stays."""
    normalised = [s / s.norm().clamp(min=1e-12) for s in scores]
    ranked = sorted(
        ((float(value), layer, unit) for layer, s in enumerate(normalised) for unit, value in enumerate(s.tolist())),
    )
    remove = round(share * len(ranked))
    left = [len(s) for s in scores]
    dropped: set[tuple[int, int]] = set()
    for _value, layer, unit in ranked:
        if len(dropped) == remove:
            break
        if left[layer] > 1:
            dropped.add((layer, unit))
            left[layer] -= 1
    return [[u for u in range(len(s)) if (layer, u) not in dropped] for layer, s in enumerate(scores)]


def prune_by_importance(
    model: torch.nn.Module, batches: Iterable[dict[str, torch.Tensor]], heads: float, neurons: float
) -> dict[str, Any]:
    """Scores every head and neuron on `batches`, removes the lowest shares (in place); returns what was kept."""
    before = sizes(model)
    parameters = sum(p.numel() for p in model.parameters())
    in_blocks = _block_parameters(model)
    head_scores, neuron_scores = importance(model, batches)
    kept_heads = choose(head_scores, heads)
    kept_neurons = choose(neuron_scores, neurons)
    prune(model, kept_heads, kept_neurons)
    after = sizes(model)
    return {
        "heads": {"share": heads, "before": sum(before["heads"]), "after": sum(after["heads"])},
        "neurons": {"share": neurons, "before": sum(before["neurons"]), "after": sum(after["neurons"])},
        "parameters": {"before": parameters, "after": sum(p.numel() for p in model.parameters())},
        "block_parameters": {"before": in_blocks, "after": _block_parameters(model)},
        "kept_heads": kept_heads,
        "layers": after,
    }


def _block_parameters(model: torch.nn.Module) -> int:
    """Parameters of the transformer blocks (a multilingual model's embeddings are most of the rest)."""
    return sum(p.numel() for p in encoder_layers(model, "prune").parameters())


def prune(model: torch.nn.Module, heads: list[list[int]], neurons: list[list[int]]) -> None:
    """Keeps, per layer, the heads and neurons listed (in place) and records the sizes in the config."""
    for block, kept_heads, kept_neurons in zip(blocks(model, "prune"), heads, neurons, strict=True):
        size = block.head_size
        rows = torch.tensor([h * size + i for h in kept_heads for i in range(size)], dtype=torch.long)
        attention = block.attention
        for name in ("query", "key", "value"):
            setattr(attention, name, _cut(getattr(attention, name), rows, dim=0))
        _set_heads(attention, len(kept_heads))
        layer = block.layer
        layer.attention.output.dense = _cut(block.out, rows, dim=1)
        keep = torch.tensor(kept_neurons, dtype=torch.long)
        layer.intermediate.dense = _cut(block.up, keep, dim=0)
        layer.output.dense = _cut(block.down, keep, dim=1)
    mark(model)


def shape(model: torch.nn.Module, sizes: dict[str, list[int]], key: str) -> None:
    """Cuts a model to recorded sizes (the first units of each layer; the weights are read afterwards)."""
    found = blocks(model, key)
    heads, neurons = sizes.get("heads", []), sizes.get("neurons", [])
    if len(heads) != len(found) or len(neurons) != len(found):
        raise RunDirError(
            f"{key}: {PRUNED_KEY} lists sizes for another number of layers than the model's {len(found)}"
        )
    for block, h, n in zip(found, heads, neurons, strict=True):
        if not (isinstance(h, int) and 1 <= h <= block.heads and isinstance(n, int) and 1 <= n <= block.neurons):
            raise RunDirError(f"{key}: {PRUNED_KEY} sizes {h} heads / {n} neurons do not fit the model's layers")
    prune(model, [list(range(h)) for h in heads], [list(range(n)) for n in neurons])


def sizes(model: torch.nn.Module) -> dict[str, list[int]]:
    found = blocks(model, "prune")
    return {"heads": [b.heads for b in found], "neurons": [b.neurons for b in found]}


def mark(model: Any) -> None:
    """Records the per-layer sizes in the config when any layer differs from the config's own sizes."""
    config = model.config
    now = sizes(model)
    full = all(h == config.num_attention_heads for h in now["heads"]) and all(
        n == config.intermediate_size for n in now["neurons"]
    )
    setattr(config, PRUNED_KEY, None if full else now)


def is_pruned(model: torch.nn.Module) -> bool:
    return getattr(getattr(model, "config", None), PRUNED_KEY, None) is not None


def _cut(layer: torch.nn.Linear, index: torch.Tensor, dim: int) -> torch.nn.Linear:
    """A Linear layer with only the output (dim 0) or input (dim 1) units in `index`."""
    weight = layer.weight.detach().index_select(dim, index.to(layer.weight.device)).clone()
    bias = None if layer.bias is None else layer.bias.detach()
    if bias is not None and dim == 0:
        bias = bias.index_select(0, index.to(bias.device)).clone()
    # Built on the meta device: its own random initialisation would be thrown away at once.
    cut = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
    cut.weight = torch.nn.Parameter(weight, requires_grad=layer.weight.requires_grad)
    if bias is not None:
        cut.bias = torch.nn.Parameter(bias.clone(), requires_grad=layer.bias.requires_grad)
    return cut


def _set_heads(attention: Any, heads: int) -> None:
    attention.num_attention_heads = heads
    attention.all_head_size = heads * attention.attention_head_size
