# gac-analysis: `make test` and `make demo` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# glibc malloc settings that halve CPU time of large tensor allocations (see README, Performance)
export MALLOC_MMAP_THRESHOLD_ ?= 4294967296
export MALLOC_TRIM_THRESHOLD_ ?= 68719476736

.PHONY: test lint demo bench install clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# One pip command installs torch (pinned exactly in pyproject.toml) with everything else.
$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed-test

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q

# ruff (configured in pyproject.toml: rules, line length 120); installed by the test extra.
lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The main job on the embedded default (a trained GAC-MS-ResNet on held-out digits): energy, observer, report;
# then its direct-coding twin on the same 360 held-out digits (its observer: its own stem's direct spikes vs a
# seeded GAC encoder on that stem), the comparison in reports/demo/compare/, and report.md with the
# "GAC vs direct coding on the same task" section. reports/demo/report.json stays the GAC default's (CI budget).
demo: $(VENV)/.installed-test
	$(BIN)/gac-analyze energy --out reports/demo
	$(BIN)/gac-analyze observe --num-images 8 --out reports/demo/observe
	$(BIN)/gac-analyze energy --model default-direct --out reports/demo/direct
	$(BIN)/gac-analyze observe --model default-direct --num-images 8 --seeded-gac --out reports/demo/direct/observe
	$(BIN)/gac-analyze compare reports/demo reports/demo/direct --names gac,direct --out reports/demo/compare
	$(BIN)/gac-analyze report reports/demo

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/bench_profile.py

clean-venv:
	rm -rf $(VENV)
