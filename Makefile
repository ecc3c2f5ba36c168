# medm2g — every target creates/uses .venv itself.
# CPU installs pin torch to the local CPU wheel via constraints-cpu.txt; set CONSTRAINTS= to use your own torch.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CONSTRAINTS ?= constraints-cpu.txt
PIP_C := $(if $(CONSTRAINTS),-c $(CONSTRAINTS),)
STAMP := $(VENV)/.installed

.PHONY: install test lint demo bench weights clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(PIP_C) -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check medm2g_cli tests bench
	$(VENV)/bin/mypy medm2g_cli

test: $(STAMP)
	$(VENV)/bin/ruff check medm2g_cli tests bench
	$(PY) -m pytest -q -p no:cacheprovider tests

demo: $(STAMP)
	$(VENV)/bin/medm2g demo -o demo-out --overwrite

bench: $(STAMP)
	$(PY) bench/run.py

weights: $(STAMP)
	bash examples/train_demo_weights.sh

clean:
	rm -rf demo-out bench/results.json .pytest_cache .ruff_cache .mypy_cache
