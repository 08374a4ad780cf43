"""Language adapters that switch with the input language (MAD-X, Pfeiffer et al. 2020, with LoRA through peft).

A language adapter is trained per language by masked-LM on a frozen encoder (`task=mlm peft=lang_adapter`). A
task run loads them (`peft.lang_adapters={en: <run>, zh: <run>}`) frozen, under its own task adapter: training
runs the task adapter with the training language's adapter, and every evaluation set, prediction call or served
request runs with its own language's adapter (a language without one runs with the task adapter alone).

Why LoRA and not MAD-X's bottleneck layers: LoRA updates are linear, so a language's update and the task's add
up in the same layers and either folds into the weights. The run's model/ is the encoder with the task adapter
merged; language adapters stay in adapter/lang_<code>/ and are put back on top when the run is loaded; an export
merges one language's adapter on top and is a plain model again.
"""

from __future__ import annotations

import copy
import json
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlft.errors import ConfigError
from mlft.models.adapters import ADAPTER_FILE, LANG_PREFIX, is_peft
from mlft.rundir import RunDir

PREFIX = LANG_PREFIX
"""Adapter names of language adapters inside the model (and their folders under a run's adapter/)."""
KEY = "peft.lang_adapters"


def adapter_folder(path: str, key: str = KEY) -> Path:
    """A run directory's adapter/ (or a folder that is itself an adapter)."""
    folder = Path(path)
    for candidate in (RunDir(folder).adapter_dir, folder):
        if (candidate / "adapter_config.json").is_file() and (candidate / ADAPTER_FILE).is_file():
            return candidate
    raise ConfigError(
        f"{key}: {path} holds no adapter (adapter/adapter_config.json); train one with task=mlm peft=lang_adapter"
    )


def saved_languages(adapter_dir: Path) -> dict[str, Path]:
    """The language adapters a run saved beside its task adapter: {lang: folder}."""
    if not adapter_dir.is_dir():
        return {}
    return {
        p.name[len(PREFIX) :]: p
        for p in sorted(adapter_dir.iterdir())
        if p.name.startswith(PREFIX) and (p / "adapter_config.json").is_file()
    }


def attach(model: Any, adapters: dict[str, Path], key: str = KEY) -> Any:
    """`model` (a PeftModel with the task adapter, or a plain model) with each language's adapter added, frozen
    and inactive. Only the adapter's LoRA weights are read: a masked-LM run's head transform stays behind."""
    from peft import LoraConfig, get_peft_model

    for lang, folder in adapters.items():
        saved = read_settings(folder, key)
        config = LoraConfig(
            r=saved["r"],
            lora_alpha=saved["lora_alpha"],
            target_modules=saved["target_modules"],
            use_rslora=saved.get("use_rslora", False),
            use_dora=saved.get("use_dora", False),
            lora_dropout=0.0,
            inference_mode=True,
        )
        name = PREFIX + lang
        if not re.fullmatch(r"[A-Za-z0-9-]+", lang):  # it names the adapter's folder when the run saves it
            raise ConfigError(f"{key}: {lang!r} is not a language code (letters, digits and '-')")
        try:
            with warnings.catch_warnings():  # peft asks transformers about gradient checkpointing by a deprecated name
                warnings.simplefilter("ignore", FutureWarning)
                if is_peft(model):
                    model.add_adapter(name, config)
                else:
                    model = get_peft_model(model, config, adapter_name=name)
        except ValueError as err:  # its target layers are not in this model
            raise ConfigError(f"{key}: the {lang} adapter in {folder} does not fit this model ({err})") from None
        load_lora(model, name, folder / ADAPTER_FILE, f"{key}: the {lang} adapter in {folder}")
    freeze(model)
    use(model, [n for n in model.peft_config if not n.startswith(PREFIX)])
    return model


def read_settings(folder: Path, key: str) -> dict[str, Any]:
    """A LoRA adapter's settings, checked before anything is allocated from them (a run directory is data)."""
    file = folder / "adapter_config.json"
    try:
        saved = json.loads(file.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{key}: cannot read {file} ({err})") from None
    if not isinstance(saved, dict) or saved.get("peft_type") != "LORA":
        kind = saved.get("peft_type") if isinstance(saved, dict) else None
        raise ConfigError(
            f"{key}: {folder} is a {kind} adapter; language adapters are LoRA (task=mlm peft=lang_adapter)"
        )
    targets = saved.get("target_modules")
    valid_targets = isinstance(targets, list) and all(isinstance(t, str) for t in targets)
    r, alpha = saved.get("r"), saved.get("lora_alpha")
    if not (isinstance(r, int) and 1 <= r <= 1024 and isinstance(alpha, (int, float)) and valid_targets):
        raise ConfigError(f"{key}: {file} is not a LoRA adapter config mlft wrote (r, lora_alpha, target_modules)")
    return saved


def load_lora(model: Any, name: str, file: Path, what: str) -> None:
    """Puts the LoRA weights of `file` into adapter `name`. (peft's own loader also expects the task head
    the file does not hold.) Saved names lack the adapter's name: `...query.lora_A.weight`."""
    from safetensors.torch import load_file

    weights = {}
    for saved, tensor in load_file(file).items():
        if ".lora_" in saved:
            module, _, leaf = saved.rpartition(".")
            weights[f"{module}.{name}.{leaf}"] = tensor
    # (A task PeftModel also gives every adapter a copy of its head, unused by language adapters.)
    own = {n for n, _ in model.named_parameters() if f".{name}." in n and ".lora_" in n}
    if weights.keys() != own:
        odd = sorted(weights.keys() ^ own)
        raise ConfigError(
            f"{what} does not fit this model ({len(odd)} weights differ, e.g. {odd[0]}): trained on another encoder?"
        )
    try:
        model.load_state_dict(weights, strict=False)
    except RuntimeError as err:
        raise ConfigError(f"{what} does not fit this model ({str(err).splitlines()[-1].strip()[:200]})") from None


def languages(model: Any) -> list[str]:
    """The languages `model` has adapters for."""
    return [n[len(PREFIX) :] for n in getattr(model, "peft_config", {}) if n.startswith(PREFIX)]


def freeze(model: Any) -> None:
    for name, param in model.named_parameters():
        if f".{PREFIX}" in name:
            param.requires_grad_(False)


def use(model: Any, names: list[str]) -> None:
    """Makes `names` the active adapters of every LoRA layer (peft sums the updates of active adapters)."""
    from peft.tuners.lora import LoraLayer

    for module in model.modules():
        if isinstance(module, LoraLayer):
            module.set_adapter(names)
    freeze(model)  # set_adapter marks active adapters trainable: language adapters never are


def active(model: Any) -> list[str]:
    from peft.tuners.lora import LoraLayer

    return next((list(m.active_adapters) for m in model.modules() if isinstance(m, LoraLayer)), [])


@contextmanager
def language(model: Any, lang: str) -> Iterator[None]:
    """Runs the body with `lang`'s adapter under the task adapter; a model without language adapters is left
    as it is. The adapters active before are restored afterwards (training goes on with its own language)."""
    if lang not in languages(model):
        if not languages(model):
            yield
            return
        lang = ""
    before = active(model)
    use(model, [n for n in before if not n.startswith(PREFIX)] + ([PREFIX + lang] if lang else []))
    try:
        yield
    finally:
        use(model, before)


def merge_language(model: Any, lang: str) -> Any:
    """A plain copy of `model` (a loaded run: the task adapter already merged) with `lang`'s adapter folded in."""
    copied = copy.deepcopy(model)
    if lang in languages(copied):
        return copied.merge_and_unload(adapter_names=[PREFIX + lang])
    return copied.unload()


def task_adapters(model: Any) -> list[str]:
    return [n for n in model.peft_config if not n.startswith(PREFIX)]
