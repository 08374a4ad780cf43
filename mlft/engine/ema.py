"""Weight EMA (trainer.ema): an exponential moving average of the trainable weights, updated after every optimizer
step, is what the run evaluates, keeps as its best weights and ends with; the weights the optimizer trains go on
unchanged underneath (Polyak and Juditsky 1992; as timm's ModelEmaV2 and TensorFlow's ExponentialMovingAverage).

The average starts at the initial weights and warms up: its decay at update t is min(decay, (1 + t) / (10 + t)), so
the first steps' weights, far from where training ends, do not dominate a short run. It is kept in fp32 and written
into every resumable checkpoint (ema.safetensors beside Accelerate's state), so a resumed run is exact.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mlft.engine.hooks import Hooks
from mlft.errors import RunDirError

FILE = "ema.safetensors"
"""The average's weights inside a resumable checkpoint."""


class WeightAverage:
    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.params = {name: p for name, p in model.named_parameters() if p.requires_grad}
        self.average = {name: p.detach().float().clone() for name, p in self.params.items()}
        self.updates = 0
        self.trained: dict[str, torch.Tensor] | None = None

    def update(self, step: int) -> None:
        """After an optimizer step (`step`: the loop's; the average counts its own updates, restored on resume)."""
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        with torch.no_grad():
            for name, p in self.params.items():
                if self.average[name].device != p.device:  # Accelerate moved the model after the average was made
                    self.average[name] = self.average[name].to(p.device)
                self.average[name].lerp_(p.detach().float(), 1 - decay)
        self.updates += 1

    def swap_in(self) -> None:
        """The average into the model, the trained weights kept aside."""
        self.trained = {name: p.detach().clone() for name, p in self.params.items()}
        self._copy(self.average)

    def swap_out(self) -> None:
        if self.trained is not None:
            self._copy(self.trained)
            self.trained = None

    def keep(self) -> None:
        """Training ended: the model keeps the average."""
        self._copy(self.average)

    def save(self, folder: Path) -> None:
        tensors = {name: t.detach().cpu().contiguous() for name, t in self.average.items()}
        save_file(tensors, str(folder / FILE), metadata={"updates": str(self.updates), "decay": str(self.decay)})

    def load(self, folder: Path) -> None:
        path = folder / FILE
        try:
            with safe_open(str(path), "pt") as f:
                saved = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 - not iterable itself
                updates = int((f.metadata() or {})["updates"])
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            raise RunDirError(
                f"{path}: cannot resume the weight average ({str(err).splitlines()[0][:200] if str(err) else err!r}); "
                "the checkpoint was written without trainer.ema, or is damaged"
            ) from None
        if saved.keys() != self.average.keys() or any(saved[k].shape != v.shape for k, v in self.average.items()):
            raise RunDirError(f"{path}: the weight average does not fit this model's trainable weights")
        self.average = {name: saved[name].to(v.device) for name, v in self.average.items()}
        self.updates = updates

    def _copy(self, weights: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, p in self.params.items():
                p.copy_(weights[name].to(device=p.device, dtype=p.dtype))


def attach_ema(hooks: Hooks, model: torch.nn.Module, decay: float) -> WeightAverage:
    """Updates the average after every optimizer step, evaluates and saves the best weights with it, and ends
    training with it."""
    average = WeightAverage(model, decay)
    hooks.add("optimizer_step", average.update)
    hooks.add("before_evaluate", average.swap_in)
    hooks.add("after_evaluate", average.swap_out)
    hooks.add("before_save", average.save)
    hooks.add("after_resume", average.load)
    hooks.add("after_training", average.keep)
    return average
