from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlft.config import DataConfig, TaskConfig
from mlft.data.load import load_data
from mlft.data.readers import read_conll
from mlft.errors import DataError

from conftest import FIXTURES
from helpers import read_examples, task_rules

COLUMNS: dict[str, str] = {}


def test_conll_with_docstart_and_four_columns():
    examples = read_conll(FIXTURES / "en_ner" / "train.conll", token_column=0, tag_column=-1)
    assert len(examples) == 48
    assert all(len(ex["tokens"]) == len(ex["tags"]) for ex in examples)
    assert not any("-DOCSTART-" in ex["tokens"] for ex in examples)
    assert examples[0]["loc"].endswith(":3")  # the first sentence starts after -DOCSTART- and a blank line


def test_conll_bom_crlf_and_tabbed_token_with_space(tmp_path):
    path = tmp_path / "a.conll"
    path.write_bytes("\ufeffNew York\tB-LOC\r\nis\tO\r\n\r\nfine\tO\r\n".encode())
    examples = read_conll(path)
    assert [ex["tokens"] for ex in examples] == [["New York", "is"], ["fine"]]
    assert examples[0]["tags"] == ["B-LOC", "O"]


@pytest.mark.parametrize(
    "content,line,fragment",
    [
        (b"a\tO\nb\n", 2, "expected a token and a tag"),
        (b"a\tO\n\xff\xfe\tO\n", 2, "not valid UTF-8"),
        (b"\n\n", 1, "empty"),
    ],
)
def test_conll_errors_name_file_and_line(tmp_path, content, line, fragment):
    path = tmp_path / "bad.conll"
    path.write_bytes(content)
    with pytest.raises(DataError) as err:
        read_conll(path)
    assert f"{path}:{line}" in err.value.problems[0]
    assert fragment in err.value.problems[0]


def test_invalid_transition_is_reported_with_the_tokens_line(tmp_path):
    path = tmp_path / "t.conll"
    path.write_text("x\tO\n\na\tO\nb\tI-PER\n")
    data = DataConfig(train=str(path))
    task = TaskConfig(name="ner", type="token_classification", metric="f1")
    with pytest.raises(DataError) as err:
        load_data(data, task, task_rules(task.type), ["en"], ["en"])
    assert f"{path}:4:" in err.value.problems[0] and "data.repair=true" in err.value.problems[0]
    data = dataclasses.replace(data, repair=True)
    loaded = load_data(data, task, task_rules(task.type), ["en"], ["en"])
    assert loaded.splits["train"]["en"][1]["tags"] == ["O", "B-PER"]


def test_bmes_file_is_converted_on_load():
    data = DataConfig(train=str(FIXTURES / "zh_ner" / "train.bmes"), scheme="BMES")
    task = TaskConfig(name="ner", type="token_classification", metric="f1")
    loaded = load_data(data, task, task_rules(task.type), ["zh"], ["zh"])
    tags = [t for ex in loaded.splits["train"]["zh"] for t in ex["tags"]]
    assert {t[:2] for t in tags if t != "O"} <= {"B-", "I-"}
    assert loaded.labels == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]


def test_jsonl_errors_are_all_reported(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "ok", "label": "pos"}\n{"text": 3, "label": "pos"}\nnot json\n[1]\n{"label": "x"}\n')
    with pytest.raises(DataError) as err:
        read_examples(path, columns=COLUMNS)
    lines = [p.split(":")[1] for p in err.value.problems]
    assert lines == ["2", "3", "4", "5"]


def test_csv_multilabel_and_tsv_pairs():
    ml = read_examples(FIXTURES / "multilabel" / "train.csv", columns=COLUMNS, label_separator="|")
    assert ml[0]["label"] == ["sports", "politics"]
    columns = {**COLUMNS, "text": "premise", "text_pair": "hypothesis"}
    pairs = read_examples(FIXTURES / "nli" / "train.tsv", columns=columns)
    assert pairs[0]["text_pair"] == "A person plays music." and pairs[0]["label"] == "entailment"


def test_csv_missing_column_is_reported(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("sentence,label\nhello,pos\n")
    with pytest.raises(DataError, match="missing column"):
        read_examples(path, columns=COLUMNS)


def test_labels_only_in_dev_are_reported(tmp_path):
    train, dev = tmp_path / "train.jsonl", tmp_path / "dev.jsonl"
    train.write_text(
        json.dumps({"text": "a", "label": "pos"}) + "\n" + json.dumps({"text": "c", "label": "neg"}) + "\n"
    )
    dev.write_text(json.dumps({"text": "b", "label": "neutral"}) + "\n")
    task = TaskConfig(name="s", type="sequence_classification", metric="accuracy")
    with pytest.raises(DataError, match="neutral"):
        load_data(DataConfig(train=str(train), dev=str(dev)), task, task_rules(task.type), ["en"], ["en"])


def test_hub_source_through_datasets_with_class_labels(tmp_path):
    """A local parquet dataset goes through the same datasets.load_dataset path as hub ids."""
    import datasets

    features = datasets.Features(
        {
            "tokens": datasets.Sequence(datasets.Value("string")),
            "ner_tags": datasets.Sequence(datasets.ClassLabel(names=["O", "B-PER", "I-PER"])),
        }
    )
    for split in ("train", "validation"):
        ds = datasets.Dataset.from_dict(
            {"tokens": [["Ann", "Lee", "ran"]], "ner_tags": [[1, 2, 0]]}, features=features
        )
        ds.to_parquet(str(tmp_path / f"{split}.parquet"))
    task = TaskConfig(name="ner", type="token_classification", metric="f1")
    data = DataConfig(train=f"hub:{tmp_path}", dev=f"hub:{tmp_path}")
    loaded = load_data(data, task, task_rules(task.type), ["en"], ["en"])
    assert loaded.splits["train"]["en"][0]["tags"] == ["B-PER", "I-PER", "O"]
    assert loaded.splits["dev"]["en"][0]["tokens"] == ["Ann", "Lee", "ran"]


def test_hub_dataset_with_a_loading_script_is_a_data_error_and_the_script_never_runs(tmp_path):
    marker = tmp_path / "ran"
    (tmp_path / f"{tmp_path.name}.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    task = TaskConfig(name="ner", type="token_classification", metric="f1")
    data = DataConfig(train=f"hub:{tmp_path}", dev=f"hub:{tmp_path}")
    with pytest.raises(DataError, match="dataset scripts are not run"):
        load_data(data, task, task_rules(task.type), ["en"], ["en"])
    assert not marker.exists()


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200))
def test_conll_reader_fails_only_with_data_errors(tmp_path_factory, payload):
    path = tmp_path_factory.mktemp("fuzz") / "f.conll"
    path.write_bytes(payload)
    try:
        examples = read_conll(path)
    except DataError as err:
        assert all(str(path) in p for p in err.problems)
    else:
        assert all(len(ex["tokens"]) == len(ex["tags"]) > 0 for ex in examples)


def test_csv_quoted_fields_keep_their_line_breaks_and_records_are_named_by_their_first_line(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text('text,label\n"line one\nline two",pos\nthird,neg\n')
    examples = read_examples(path, columns=COLUMNS)
    assert [ex["text"] for ex in examples] == ["line one\nline two", "third"]
    assert [ex["loc"].rsplit(":", 1)[1] for ex in examples] == ["2", "4"]


def test_csv_quote_never_closed_is_reported_where_it_opens(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text('text,label\nok,pos\n"broken,neg\nx,pos\ny,neg\n')
    with pytest.raises(DataError, match=r"a\.csv:3: .*never closed"):
        read_examples(path, columns=COLUMNS)
