# Set-up and entry points. `make demo` and `make test` work on a fresh machine: they create a
# virtual environment, install torch 2.13.0 first (so no CUDA build is pulled), then the project.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test benchmarks clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[test]"
	# stable-audio-tools' DiT is tested as the real class; its declared dependencies (a CUDA torch,
	# gradio, wandb, ...) are not needed for it, so it is installed without them.
	$(BIN)/python -m pip install --quiet --no-deps stable-audio-tools==0.0.19
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m examples.demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

benchmarks: $(STAMP)
	$(BIN)/python -m benchmarks.overhead

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis
