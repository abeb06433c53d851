# The two commands users need:
#   make run    sample raw data -> dbt build -> data-quality report -> tune -> tuning report
#               -> score the lake with the champion -> dbt build (model_performance) -> model page
#   make test   install the dev tools too, lint, run the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ROWS ?= 200000
MONTHS ?= 2015-01:2019-06
SEED ?= 42
# A new Optuna study per `make run`: a study is bound to the lake build it tuned on. (`:=`:
# the time is taken once, so tune and tuning-report name the same study.)
ifndef STUDY
STUDY := dc-taxi-$(shell date -u +%Y%m%dT%H%M%S)
endif

export DBT_PROJECT_DIR := $(CURDIR)/dbt_project
export DBT_PROFILES_DIR := $(CURDIR)
export MLFLOW_DISABLE_TELEMETRY := true
export DBT_SEND_ANONYMOUS_USAGE_STATS := false

.PHONY: run setup setup-dev data build quality tune tuning-report predict evaluate model-report \
	reports docs browser test lint format bench-sql bench-loader bench-training image clean

run: setup data build quality tune tuning-report predict evaluate model-report
	@echo "reports: data/reports/data_quality.html data/reports/tuning.html" \
	  "data/reports/model.html"

# Installs the project and its runtime dependencies (CPU torch) into $(VENV); `source
# $(VENV)/bin/activate` afterwards also points dbt at this repo, so `dbt build` works from the
# repo root. `setup-dev` adds the test and lint tools (pytest, ruff, sqlfluff, SeaweedFS,
# Selenium, moto).
setup: $(VENV)/.installed
setup-dev: $(VENV)/.installed-dev

# PYTHONWARNINGS: setuptools warns that an editable install can be shadowed by same-named
# folders in the working directory; here they are those very folders.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install --quiet -e .
	grep -q DBT_PROJECT_DIR $(BIN)/activate || printf '%s\n' \
	  '# dc-taxi: run dbt from the repo root' \
	  'export DBT_PROJECT_DIR="$(CURDIR)/dbt_project"' \
	  'export DBT_PROFILES_DIR="$(CURDIR)"' \
	  'export MLFLOW_DISABLE_TELEMETRY=true' >> $(BIN)/activate
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

data: setup
	$(BIN)/python -m scripts.generate_raw --rows $(ROWS) --months $(MONTHS) --seed $(SEED) --out data/raw

build: setup
	$(BIN)/dbt build

tune: setup
	$(BIN)/python -m training.tune --study-name $(STUDY)

# The champion scores the current build into the lake (dc_taxi.fare_predictions); the next
# `dbt build` evaluates it (model_performance), and the model page shows it.
predict: setup
	$(BIN)/python -m training.predict

evaluate: setup
	$(BIN)/dbt build

model-report: setup
	$(BIN)/python -m reports.model

# Data-quality + split-analysis page, right after dbt build.
quality: setup
	$(BIN)/python -m reports.data_quality

tuning-report: setup
	$(BIN)/python -m reports.tuning --study-name $(STUDY)

# Every report page; prints their paths.
reports: setup
	$(BIN)/python -m reports

# dbt docs as one offline file, without touching target/run_results.json.
docs: setup
	$(BIN)/dbt docs generate --static --target-path target/docs

# Headless Chromium + chromedriver for the report tests (root or sudo).
browser:
	scripts/install_browser.sh

lint: setup-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/sqlfluff lint dbt_project/models dbt_project/data-tests

format: setup-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/sqlfluff fix dbt_project/models dbt_project/data-tests

test: setup-dev lint
	$(BIN)/dbt parse --quiet
	$(BIN)/pytest -q

bench-sql: setup
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m benchmarks.bench_sql_pipeline --rows 10000000

bench-loader: setup
	$(BIN)/python -m benchmarks.bench_loader

bench-training: setup
	$(BIN)/python -m benchmarks.bench_training

# The container image (Containerfile; docs/container.md), with docker or podman.
# IMAGE= names it; BASE= is the base image, or `debootstrap` to make one offline from Debian's
# packages (root); TORCH_INDEX_URL= adds an index for torch (a CUDA build). Uses the host's
# python3 and its pip settings, not the venv.
IMAGE ?= dc-taxi-lakehouse:latest
BASE ?= python:3.11-slim
image:
	$(PYTHON) -m scripts.container_image build --image $(IMAGE) --base $(BASE) \
	  $(if $(TORCH_INDEX_URL),--torch-index-url $(TORCH_INDEX_URL))

clean:
	rm -rf data dbt_project/target dbt_project/logs logs build
