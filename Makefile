# Set-up and entry points. `make demo` and `make test` work on a fresh machine: they create a
# virtual environment, install torch 2.13.0 first (so no CUDA build is pulled), then the project.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint docs benchmarks clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[test,lint,docs]"
	# stable-audio-tools' DiT is tested as the real class; its declared dependencies (a CUDA torch,
	# gradio, wandb, ...) are not needed for it, so it is installed without them.
	$(BIN)/python -m pip install --quiet --no-deps stable-audio-tools==0.0.19
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m examples.demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# ruff (lint and format check) and mypy over the library, configured in pyproject.toml.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The documentation site into site/; --strict turns a broken link or API reference into a failure.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

benchmarks: $(STAMP)
	$(BIN)/python -m benchmarks.overhead

clean:
	rm -rf $(VENV) out site .pytest_cache .hypothesis
