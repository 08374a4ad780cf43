"""Extractive question answering: SQuAD files in, windows over the context's offsets, answers pooled over windows,
per-language exact match and F1, and everything the other task types have (eval, predict, export, ensembles,
distillation, adapters) through the task protocol."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mlft.cli import main
from mlft.config import DataConfig, ModelConfig, TaskConfig
from mlft.data.load import load_data
from mlft.errors import DataError
from mlft.tasks import build_task
from mlft.tasks import qa_metrics as m
from mlft.tasks.question_answering import context_words, decode, span

from conftest import FIXTURES
from helpers import cli_error, metrics, train

QA = FIXTURES / "qa"
ZH_QA = [f"data.train={QA / 'zh_train.json'}", f"data.dev={QA / 'zh_dev.json'}", f"data.test={QA / 'zh_test.json'}"]
SMALL = ["model.max_length=48", "model.stride=8", "task.max_question_length=16"]
"""Windows of 48 tokens: every fixture context is cut into several, answers fall on their borders."""


def qa_task(**settings):
    task = TaskConfig(name="qa", type="question_answering", metric="f1", **settings)
    return task, build_task(task, ModelConfig(name="m", name_or_path="m", max_length=48, stride=8), [])


def load(files: dict[str, Path], repair: bool = False, **settings) -> dict:
    task, rules = qa_task(**settings)
    data = DataConfig(repair=repair, **{split: str(path) for split, path in files.items()})
    return load_data(data, task, rules, ["zh"], ["zh"], need_train="train" in files).splits


# Reading


def test_squad_json_and_jsonl_give_the_same_examples_with_located_ids():
    splits = load({"train": QA / "zh_train.json", "dev": QA / "en_dev.jsonl"})
    first = splits["train"]["zh"][0]
    assert first["id"] == "zh-train-0-0" and first["answers"] == [{"text": "深圳", "start": 26}]
    assert first["loc"] == f"{QA / 'zh_train.json'}:11"  # the line of its id in the file
    assert first["lang"] == "zh"
    english = splits["dev"]["zh"][0]  # a JSONL file with hub-style answers {"text": [...], "answer_start": [...]}
    assert english["answers"] == [{"text": "Cairo", "start": english["context"].index("Cairo")}]
    assert english["loc"].endswith("en_dev.jsonl:1")


def test_squad_2_unanswerable_questions_need_task_no_answer():
    with pytest.raises(DataError) as info:
        load({"train": QA / "zh_train_v2.json"})
    assert "8 training questions have no answer (SQuAD 2.0): set task.no_answer=true" in str(info.value)
    train = load({"train": QA / "zh_train_v2.json"}, no_answer=True)["train"]["zh"]
    assert sum(not ex["answers"] for ex in train) == 8  # is_impossible: plausible answers are not gold


def test_an_answer_that_is_not_its_span_names_file_line_and_question(tmp_path):
    data = json.loads((QA / "zh_train.json").read_text())
    answer = data["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]
    answer["answer_start"] += 1  # off by one, as seven answers of CMRC 2018's dev set are
    data["data"][1]["paragraphs"][0]["qas"][1]["answers"].append({"text": "不在文中", "answer_start": 3})
    path = tmp_path / "train.json"
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1))
    with pytest.raises(DataError) as info:
        load({"train": path})
    problems = info.value.problems
    assert problems[0].startswith(f"{path}:11: question 'zh-train-0-0': answer '深圳' at character 27")
    assert "it occurs at character 26: data.repair=true moves it" in problems[0]
    assert "'不在文中' at character 3" in problems[1] and "keeps it as a gold answer only" in problems[1]
    repaired = load({"train": path}, repair=True)["train"]["zh"]
    assert repaired[0]["answers"][0]["start"] == 26
    assert repaired[5]["answers"][-1] == {"text": "不在文中", "start": -1}  # scored, never trained on


def test_a_table_is_no_qa_format(tmp_path):
    (tmp_path / "train.csv").write_text("question,context,answers\na,b,c\n")
    with pytest.raises(DataError, match="question answering reads SQuAD JSON, JSONL or hub datasets"):
        load({"train": tmp_path / "train.csv"})


# Windows and positions


def all_examples() -> list[dict]:
    splits = load({"train": QA / "zh_train.json", "dev": QA / "zh_dev.json", "test": QA / "zh_test.json"})
    english = load({"train": QA / "en_train.jsonl", "dev": QA / "en_dev.jsonl"})
    return [ex for s in (splits, english) for by_lang in s.values() for exs in by_lang.values() for ex in exs]


def recovered(examples: list[dict], tokenizer, max_length: int, stride: int) -> tuple[set, int]:
    """The gold answers recovered from the windows' start and end positions, and how many windows cut one."""
    found, cut = set(), 0
    task = build_task(
        TaskConfig(name="qa", type="question_answering", metric="f1", max_question_length=16),
        ModelConfig(name="m", name_or_path="m", max_length=max_length, stride=stride),
        [],
    )
    for feature in task.encode(examples, tokenizer, "zh"):
        ex = examples[feature["example"]]
        start, end = feature["start_positions"], feature["end_positions"]
        if start == feature["cls"]:
            gold = ex["answers"][0]
            inside = [o for o in feature["offsets"] if o[0] >= 0]
            cut += inside[0][0] < gold["start"] + len(gold["text"]) and gold["start"] < inside[-1][1]
            continue
        a, b = feature["offsets"][start][0], feature["offsets"][end][1]
        assert ex["context"][a:b].strip() == ex["answers"][0]["text"], (ex["id"], ex["context"][a:b])
        assert a <= ex["answers"][0]["start"] < b  # this occurrence, not another one of the same text
        found.add(ex["id"])
    return found, cut


@pytest.mark.parametrize("family", ["wordpiece", "unigram", "bpe"])
def test_every_gold_answer_is_recovered_from_a_window_for_every_tokenizer_family(tokenizers, family):
    examples, borders = all_examples(), 0
    # Windows overlap by more tokens than the longest answer has (byte-level BPE spells a Chinese year in 15), so an
    # answer that one window cuts lies wholly in the next, as with transformers' QA windows.
    for max_length, stride in [(n, 16) for n in range(52, 82, 3)]:
        found, cut = recovered(examples, tokenizers[family], max_length, stride)
        assert found == {ex["id"] for ex in examples}, (max_length, stride)
        borders += cut
    assert borders > 0  # some window borders fall inside answers: those windows learn CLS, another one the span


def test_every_gold_answer_is_recovered_with_the_multilingual_e5_tokenizer(e5_tokenizer):
    examples = all_examples()
    for max_length, stride in ((48, 8), (64, 16)):
        found, _ = recovered(examples, e5_tokenizer, max_length, stride)
        assert found == {ex["id"] for ex in examples}


def test_context_words_split_chinese_characters_and_kana_and_keep_other_runs():
    text = "张伟2008年去了Paris, then 東京のホテル。สวัสดี"
    words = [text[a:b] for a, b in context_words(text)]
    assert words == ["张", "伟", "2008", "年", "去", "了", "Paris", ",", "then", *"東京のホテル", "。", "สวัสดี"]


def test_a_span_never_starts_on_a_token_of_no_width():
    offsets = [(-1, -1), (0, 0), (0, 2), (2, 3), (3, 3), (3, 5), (-1, -1)]  # a bare ▁ of width 0 at 1 and 4
    assert span(offsets, 0, 2) == (2, 2)
    assert span(offsets, 2, 5) == (3, 5)
    assert span(offsets, 4, 6) is None  # ends past the window's context


# Decoding


def feature(index: int, offsets: list, start: list[float], end: list[float]) -> tuple[dict, dict]:
    ids = list(range(len(offsets)))
    out = {"start": torch.tensor(start + [0.0] * 3), "end": torch.tensor(end + [0.0] * 3)}  # padded batch width
    return {"input_ids": ids, "offsets": offsets, "cls": 0, "example": index}, out


def test_answers_are_pooled_over_windows_and_mapped_to_characters():
    context = "张伟在北京工作，李娜在上海。"
    example = {"context": context, "answers": []}
    window = [(-1, -1)] + [(i, i + 1) for i in range(8)] + [(-1, -1)]
    later = [(-1, -1)] + [(i, i + 1) for i in range(6, 14)] + [(-1, -1)]
    first = feature(0, window, [0, 0, 0, 0, 5, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 5, 0, 0, 0, 0])  # 北京, score 10
    second = feature(0, later, [0, 0, 0, 0, 0, 0, 7, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 6, 0, 0])  # 上海, score 13
    (prediction,) = decode([example], [first[0], second[0]], [first[1], second[1]], 20, 30, False, 0.0)
    assert prediction["text"] == "上海" and (prediction["start"], prediction["end"]) == (11, 13)
    (short,) = decode([example], [first[0], second[0]], [first[1], second[1]], 20, 1, False, 0.0)
    assert short["text"] in ("北", "京", "上", "海")  # at most one token


def test_no_answer_wins_when_the_cls_score_beats_the_best_span_by_the_threshold():
    example = {"context": "abc", "answers": []}
    f = feature(0, [(-1, -1), (0, 1), (1, 2), (2, 3)], [4, 1, 0, 0], [4, 0, 2, 0])  # null 8, best span 3
    assert decode([example], [f[0]], [f[1]], 20, 30, True, 0.0)[0]["text"] == ""
    assert decode([example], [f[0]], [f[1]], 20, 30, True, 6.0)[0]["text"] == "ab"
    assert decode([example], [f[0]], [f[1]], 20, 30, False, 0.0)[0]["text"] == "ab"  # SQuAD 1.1 always answers


# Scoring


def test_chinese_is_scored_by_characters_as_cmrc_2018_does():
    assert m.best_of(["北京市"], "北京", "zh") == (0.0, pytest.approx(0.8))  # 2 of 3 characters, precision 1
    assert m.best_of(["北京", "北京市"], "北京。", "zh")[0] == 1.0  # the best gold; punctuation dropped
    # Segments 2008|年|北|京 and 北|京|2008|年: the longest common run is two of four, not all four as a bag of them.
    assert m.f1("2008年北京", "北京2008年", "zh") == pytest.approx(0.5)
    assert m.best_of(["สวัสดี"], "สวัสดี ครับ", "th")[1] == pytest.approx(0.75)  # 6 of the prediction's 10 characters


def test_spaced_languages_use_squad_normalisation_with_mlqa_articles():
    assert m.best_of(["the Eiffel Tower"], "Eiffel tower.", "en") == (1.0, 1.0)
    assert m.best_of(["der Rhein"], "Rhein", "de") == (1.0, 1.0)
    assert m.best_of(["the Rhine"], "Rhine river", "en") == (0.0, pytest.approx(2 / 3))
    assert m.best_of([], "", "en") == (1.0, 1.0) and m.best_of([], "Paris", "en") == (0.0, 0.0)  # unanswerable


# End to end


@pytest.fixture(scope="module")
def qa_run(tmp_path_factory, tiny_models) -> Path:
    root = tmp_path_factory.mktemp("qa")
    return train(root / "run", tiny_models["unigram"], "task=qa", "lang=zh", "trainer.epochs=3", *SMALL, *ZH_QA)


def test_a_qa_run_reports_f1_and_exact_match_per_language_and_writes_spans(qa_run):
    test = metrics(qa_run)["test"]["zh"]
    assert set(test) >= {"n", "f1", "exact_match"} and test["n"] == 8
    record = json.loads((qa_run / "predictions" / "test-zh.jsonl").read_text().splitlines()[0])
    prediction = record["prediction"]
    assert record["context"][prediction["start"] : prediction["end"]] == prediction["text"]
    assert record["answers"] and 0.0 <= prediction["score"] <= 1.0


def test_predict_eval_and_exports_of_a_qa_run(qa_run, tmp_path):
    main(["predict", f"run={qa_run}", f"input={QA / 'questions.jsonl'}", f"output={tmp_path / 'p.jsonl'}"])
    records = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(records) == 4 and records[0]["id"] == "q1" and records[3]["lang"] == "en"
    assert records[2] == {"answer": None, "start": None, "end": None, "score": None}  # an empty line
    questions = [json.loads(line) for line in (QA / "questions.jsonl").read_text().splitlines() if line]
    for record, asked in zip([records[0], records[1], records[3]], questions):
        assert asked["context"][record["start"] : record["end"]] == record["answer"]
    main(["eval", f"run={qa_run}", f"out={tmp_path / 'eval'}"])
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert evaluated["test"]["zh"]["f1"] == pytest.approx(metrics(qa_run)["test"]["zh"]["f1"])

    main(["export", f"run={qa_run}", "format=onnx", "quantize=int8", f"out={tmp_path / 'onnx'}", "max_drop=100"])
    main(["export", f"run={qa_run}", "format=onnx", f"out={tmp_path / 'fp32'}", "max_drop=0"])
    main(
        ["predict", f"model={tmp_path / 'fp32'}", f"input={QA / 'questions.jsonl'}", f"output={tmp_path / 'o.jsonl'}"]
    )
    onnx_records = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [r["answer"] for r in onnx_records] == [r["answer"] for r in records]

    # The HF folder is a plain transformers QA model (transformers 5 has no question-answering pipeline left): it
    # scores starts and ends exactly as the run's model does.
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from mlft.commands.saved import load_run

    main(["export", f"run={qa_run}", f"out={tmp_path / 'hf'}", "max_drop=0"])
    model = AutoModelForQuestionAnswering.from_pretrained(tmp_path / "hf").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "hf")
    batch = tokenizer(questions[0]["question"], questions[0]["context"], return_tensors="pt")
    with torch.no_grad():
        plain, own = model(**batch), load_run(qa_run).model.eval()(**batch)
    torch.testing.assert_close(plain.start_logits, own.start_logits)
    torch.testing.assert_close(plain.end_logits, own.end_logits)


def test_an_ensemble_of_qa_runs_averages_start_and_end_and_a_student_distils_both(qa_run, tiny_models, tmp_path):
    other = train(tmp_path / "other", tiny_models["unigram"], "task=qa", "lang=zh", "seed=7", *SMALL, *ZH_QA)
    main(["eval", f"runs=[{qa_run},{other}]", f"out={tmp_path / 'ensemble'}"])
    ensemble = json.loads((tmp_path / "ensemble" / "metrics.json").read_text())
    assert ensemble["ensemble"] == [str(qa_run), str(other)] and "f1" in ensemble["test"]["zh"]
    student = train(
        tmp_path / "student",
        tiny_models["unigram"],
        "task=qa",
        "lang=zh",
        "trainer.epochs=1",
        "model.num_layers=1",
        f"distill.teacher={qa_run}",
        *SMALL,
        *ZH_QA,
    )
    assert metrics(student)["test"]["zh"]["n"] == 8


def test_lora_on_a_qa_model_trains_the_adapter_and_the_span_head(tiny_models, tmp_path):
    run = train(tmp_path / "run", tiny_models["wordpiece"], "task=qa", "lang=zh", "peft=lora", *SMALL, *ZH_QA)
    assert "f1" in metrics(run)["test"]["zh"] and (run / "adapter" / "adapter_config.json").is_file()
    config = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert config["task_type"] == "QUESTION_ANS"


def test_qa_settings_are_checked_before_anything_runs(tiny_models, tmp_path, capsys):
    err = cli_error(
        capsys, "train", "task=qa", "lang=zh", f"model={tiny_models['unigram']}", f"hydra.run.dir={tmp_path / 'r'}",
        *ZH_QA, "model.max_length=40", "model.stride=16", "task.max_question_length=24", "task.n_best=0",
        "task.multi_label=true",
    )  # fmt: skip
    assert "model.stride: windows overlap by 16 tokens, but only 12 of model.max_length=40" in err
    assert "task.n_best: must be >= 1" in err and "task.multi_label: question answering has no classes" in err
    assert not (tmp_path / "r").exists()


def test_serve_answers_records_of_questions_and_contexts_like_predict(qa_run):
    pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'mlft[serve]'")
    from fastapi.testclient import TestClient

    from mlft.commands.predict import Predictor
    from mlft.commands.saved import load_run
    from mlft.commands.serve import ServeArgs, build_app

    predictor = Predictor(load_run(qa_run), progress=False)
    asked = [json.loads(line) for line in (QA / "questions.jsonl").read_text().splitlines() if line]
    with TestClient(build_app(predictor, ServeArgs(max_chars=300))) as client:
        answered = client.post("/predict", json={"records": asked[:2]})
        assert answered.status_code == 200
        expected = predictor(asked[:2])
        assert answered.json()["predictions"] == expected and expected[0]["id"] == "q1"
        assert (
            client.post("/predict", json={"texts": [f"{asked[0]['question']}\t{asked[0]['context']}"]}).json()[
                "predictions"
            ][0]["answer"]
            == expected[0]["answer"]
        )
        refused = client.post("/predict", json={"records": [{"question": "谁？"}]})
        assert refused.status_code == 422 and "records[0]: expected" in refused.json()["detail"]
        both = client.post("/predict", json={"texts": ["a"], "records": [asked[0]]})
        assert both.status_code == 422 and "give one" in both.json()["detail"]
