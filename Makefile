# Fresh machine:  make train   (sets up .venv, trains LSRWRL on ML-100K)
#                 make test    (sets up .venv, runs the test suite)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Real MovieLens files: ../shared/data in this workplace; override with MOVIELENS_DATA=/path.
MOVIELENS_DATA ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)
export MOVIELENS_DATA
DATASET ?= ml-100k
ARGS ?=

.PHONY: install test docs train evaluate table ablation algorithms sweep search equal-budget validity bench bench-data bench-env bench-agent bench-replay clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

test: install
	$(PY) -m pytest -q -n 2 tests

# With --data (an interaction log) in ARGS, DATASET is not passed: the log is the data.
DATASET_GIVEN := $(filter command line environment,$(origin DATASET))
train: install
	$(PY) -m experiments.train $(if $(filter --data --data=%,$(ARGS)),$(if $(DATASET_GIVEN),$(error DATASET=$(DATASET) and --data both name the data: give one)),--dataset $(DATASET)) $(ARGS)

# ARGS=RUN_DIR evaluates that run, whatever its data; DATASET alone picks the newest run of it.
evaluate: install
	$(PY) -m experiments.evaluate $(if $(or $(DATASET_GIVEN),$(if $(ARGS),,none)),--dataset $(DATASET)) $(ARGS)

table: install
	$(PY) -m experiments.table1 $(ARGS)

# LSRWRL ablation (interests, losses, the paper preset), validation and test, 3 seeds: results/ablation_*.
ablation: install
	$(PY) -m experiments.studies.ablation $(ARGS)

# Every algorithm x {SB3 default policy, LSRWRL extractor, extractor + next-item loss}, 600,000 steps,
# learning rate per algorithm on the validation slice (recommended row), 3 seeds: results/algorithms_* (resumable).
algorithms: install
	$(PY) -m experiments.algorithms $(ARGS)

sweep: install
	$(PY) -m experiments.sweep $(ARGS)

search: install
	$(PY) -m experiments.search $(ARGS)

# Every model of Table 1 with the same number of validation trials (Optuna TPE via Ray Tune, ASHA
# alike), then each chosen configuration on the test split with 3 seeds and per-user metrics:
# results/tuning/$(DATASET)/<model>.json and results/equal_budget_runs/$(DATASET)/ (resumable).
equal-budget: install
	$(PY) -m experiments.equal_budget --dataset $(DATASET) $(ARGS)

# How well each simulator (replay, learned user model) reproduces held-out behaviour; reads the
# simulated-return columns of results/table1_<dataset>.csv (make table) for the policy rankings.
validity: install
	$(PY) -m experiments.studies.validity $(ARGS)

bench: bench-data bench-env bench-agent bench-replay

bench-env: install
	$(PY) -m experiments.bench_env $(ARGS)

bench-agent: install
	$(PY) -m experiments.bench_agent $(ARGS)

bench-replay: install
	$(PY) -m experiments.bench_replay $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

bench-data: install
	$(PY) -m experiments.bench_data $(ARGS)

# The documentation site (Sphinx + MyST + furo), offline, warnings as errors: docs/_build/html.
# Regenerate the result figures first with: python -m experiments.docs_results
# The docs extra is installed once (network); later builds need none.
docs: install
	$(PY) -c "import sphinx, myst_parser, furo" 2>/dev/null || $(PY) -m pip install --quiet -c constraints.txt -e ".[docs]"
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html
