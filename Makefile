# soundedit — the two commands of the README:
#   make demo   runs the main job (installs what it needs first)
#   make test   runs the test suite (installs what it needs first)
# Both are idempotent: a second run only re-installs when pyproject.toml changed.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.soundedit-installed
SYSTEM_STAMP := $(VENV)/.system-deps
export NLTK_DATA := $(abspath $(VENV))/nltk_data
# Torch as tested (CPU/GPU wheels from PyPI); override e.g. TORCH_SPEC="torch==2.11.* --index-url ..." on GPU hosts.
TORCH_SPEC ?= torch==2.11.* torchvision==0.26.* torchaudio==2.11.*
# Debian packages the tests use: WordNet 3.0 (text augmentation, no nltk.download) and Chromium (browser tests).
APT_PACKAGES := wordnet-base wordnet-sense-index chromium
DEMO_OUT ?= out/demo
DEMO_STEPS ?= auto
DEMO_SEED ?= 3

.PHONY: help setup system-deps test test-fast demo bench clean

help:
	@echo "make demo   — edit an image with a sound (fetches the weights listed in weights.lock)"
	@echo "make test   — install everything and run the test suite"

setup: $(STAMP) $(SYSTEM_STAMP)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_SPEC)
	$(PIP) install -q -e ".[app,dev,faces]"
	@touch $@

# System pieces: installed with apt-get when run as root; otherwise a clear message and the
# tests that need them skip with a reason.
$(SYSTEM_STAMP): $(STAMP)
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "note: missing Debian packages: $$missing — install them with: sudo apt-get install $$missing"; \
	  fi; \
	fi
	$(PY) -m soundedit.text.wordnet_data install "$(NLTK_DATA)"
	@touch $@

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not browser"

# The demo edits a sampled 256-px landscape (authors' generator and audio encoder, OpenAI CLIP ViT-B/32,
# as listed in weights.lock; CLIP is pinned by sha256) with a synthesised siren. --steps auto: 300 steps on a GPU
# (well under a minute), fewer on a CPU so it ends within 10 minutes on 2 cores (the command says so).
demo: setup
	$(PY) -m soundedit.editing.examples $(DEMO_OUT)/siren.wav
	$(VENV)/bin/soundedit edit --seed $(DEMO_SEED) --sound $(DEMO_OUT)/siren.wav --generator landscape-256 \
	  --audio-encoder authors-resnet18 --clip clip-vit-b-32 --preset scenes --steps $(DEMO_STEPS) --out $(DEMO_OUT)

bench: setup
	for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache out
