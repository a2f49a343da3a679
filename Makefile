# The two commands for a new machine: `make run` and `make test` (both set up .venv first);
# `make test-all` is the whole suite, what CI runs.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# Python 3.10 is required by TFX 1.16: the first interpreter that really is 3.10 (a pyenv shim
# on PATH may exist and still refuse to run), else one fetched by uv.
PYTHON310 ?= $(shell for p in $$HOME/.pyenv/versions/3.10*/bin/python3.10 $$(command -v python3.10); do \
  "$$p" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null && echo "$$p" && break; done)
UV_VERSION := 0.13.9
export TF_USE_LEGACY_KERAS := 1
export PYTHONHASHSEED := 0

RUN_ARGS ?=
TEST_ARGS ?=

.PHONY: setup run test test-all lock benchmark benchmark-serving benchmark-scale clean

setup: $(VENV)/.installed $(VENV)/.bytecode

$(VENV)/.installed: requirements.lock pyproject.toml
	@if [ ! -x $(PY) ]; then \
	  if [ -n "$(PYTHON310)" ]; then $(PYTHON310) -m venv $(VENV); \
	  else python3 -m pip install -q uv==$(UV_VERSION) && python3 -m uv venv --seed --python 3.10 $(VENV); fi; \
	fi
	$(PY) -m pip install -q uv==$(UV_VERSION)
	$(VENV)/bin/uv pip sync -q --python $(PY) requirements.lock
	$(VENV)/bin/uv pip install -q --python $(PY) --no-deps -e .
	@touch $@

# The installed packages' bytecode, compiled once (uv installs without it; about a minute).
# Python writes it at the first import otherwise, but not where it may not write
# (PYTHONDONTWRITEBYTECODE, a read-only environment): every process then compiles
# TensorFlow and TFX from source again, `import tensorflow` taking 11 s instead of 3.5 s, and
# a test run starts dozens of such processes (xdist workers, serving-check probes).
$(VENV)/.bytecode: $(VENV)/.installed
	$(PY) -m compileall -q -j 0 "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
	@touch $@

lock:
	$(VENV)/bin/uv pip compile -q --python $(PY) requirements.in -o requirements.lock

run: setup
	$(PY) local_runner.py $(RUN_ARGS)

# The fast tier: unit tests and one shared tiny pipeline run (tests/conftest.py).
test: setup
	$(PY) -m pytest -q $(TEST_ARGS)

# Everything: the fast tier plus the tests marked slow (their own runs, quality floors).
test-all: setup
	$(PY) -m pytest -q --all --durations=15 $(TEST_ARGS)

# Quality: the pipeline beside the baselines on the seed-42 split -> benchmarks/RESULTS.md,
# then on the temporal split (latest 20% by time is eval) -> benchmarks/TEMPORAL.md
benchmark: setup
	$(PY) -m benchmarks.quality $(RUN_ARGS)
	$(PY) -m benchmarks.temporal $(RUN_ARGS)

# Serving latency of the pushed models, and of the index at 1M items -> benchmarks/SERVING.md
benchmark-serving: setup
	$(PY) -m benchmarks.serving $(RUN_ARGS)

# Pipeline cost at 100K, 1M, 10M synthetic interactions (resumable: SCALE_ARGS=--sizes=1m)
# -> benchmarks/SCALE.md and benchmarks/scale.png
SCALE_ARGS ?=
benchmark-scale: setup
	$(PY) -m benchmarks.scale $(SCALE_ARGS)

clean:
	rm -rf out build
