# Two commands do everything on a fresh machine:
#   make demo   - virtualenv, install, sample intake, one nightly run on SQLite, summary
#   make test   - virtualenv, install, the whole test suite (starts PostgreSQL if it is down)
# For the inner loop: make check (the fast tests, a few minutes) and make lint (ruff, mypy).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: install demo demo-night2 test check lint format bench bench-large bench-province airflow-ui screenshots clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# the pipeline and its sample generator (make demo)
$(DEMO_STAMP): pyproject.toml constraints.txt | $(VENV)/bin/python
	$(BIN)/pip install --quiet -c constraints.txt -e '.[sample]'
	touch $(DEMO_STAMP)

# everything: tests (Celery, Spark, browser) and the linters
$(STAMP): pyproject.toml constraints.txt | $(VENV)/bin/python
	$(BIN)/pip install --quiet -c constraints.txt -e '.[sample,test,spark,lint]'
	touch $(STAMP) $(DEMO_STAMP)

install: $(STAMP)

# A clean demo: fresh sample intake, warehouse and exports under data/, then night 1 (the pairs are
# made at the programme's start, DEMO_PAIRED_ON, before the Mid-Autumn first-visit deadline), then
# the units' visit logs up to today and tonight's night (follow-through figures).
DEMO_PAIRED_ON ?= 2026-08-03
demo: $(DEMO_STAMP)
	rm -rf data/intake data/exports data/warehouse.db data/truth
	$(BIN)/rosterlink sample --out data/intake --night 1 --supplement --truth data/truth/night1.json
	$(BIN)/rosterlink nightly --as-of $(DEMO_PAIRED_ON)
	$(BIN)/rosterlink sample --visits --out data/intake --truth data/truth/visits.json
	$(BIN)/rosterlink nightly

# After `make demo`: the departments drop night 2's files (adjustments, cadre changes, closures).
demo-night2: $(DEMO_STAMP)
	$(BIN)/rosterlink sample --out data/intake --night 2 --truth data/truth/night2.json
	$(BIN)/rosterlink nightly --as-of $$(date -d tomorrow +%F)

test: $(STAMP)
	scripts/ensure-system-deps.sh
	$(BIN)/python -m pytest

# The fast tests: no Airflow scheduler, no Celery, no Spark, no browser (markers in pyproject.toml)
check: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not spark and not browser"

# ruff (lint rules and format) and mypy, as CI runs them before the tests
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Benchmarks print figures (docs/BENCHMARKS.md); none of them asserts a time.
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_read.py
	$(BIN)/python benchmarks/bench_linkage.py
	$(BIN)/python benchmarks/bench_pairing.py
	$(BIN)/python benchmarks/bench_night.py --scale 1

bench-large: $(STAMP)
	$(BIN)/python benchmarks/bench_linkage.py --scale 100
	$(BIN)/python benchmarks/bench_pairing.py --province
	$(BIN)/python benchmarks/bench_soak.py --nights 30 --scale 10
	$(BIN)/python benchmarks/bench_night.py --scale 100

# A province night (1,000,000 households, 100,000 cadres, 40 files) on PostgreSQL under Celery with
# 1 and 2 workers (docs/BENCHMARKS.md); writing the intake alone takes about half an hour here
bench-province: $(STAMP)
	$(BIN)/python benchmarks/bench_province.py --workers 2,1 --quiet-nights 2 --workdir data/province --keep

# Airflow with its UI on http://127.0.0.1:$(PORT), this machine only (see README: Running Airflow with
# its UI). `airflow standalone` starts its components as a plain `airflow`, so the virtualenv's bin/
# goes first on PATH; the plugins folder brings the Rosterlink page (Browse -> Rosterlink). The admin
# password is printed at the first start and kept in $(AIRFLOW_UI_HOME)/simple_auth_manager_passwords.json.generated.
PORT ?= 8080
AIRFLOW_UI_HOME ?= data/airflow-ui
airflow-ui: $(STAMP)
	@echo "Airflow UI: http://127.0.0.1:$(PORT)  user admin, password in $(abspath $(AIRFLOW_UI_HOME))/simple_auth_manager_passwords.json.generated"
	PATH="$(CURDIR)/$(BIN):$$PATH" AIRFLOW_HOME="$(abspath $(AIRFLOW_UI_HOME))" \
	AIRFLOW__CORE__DAGS_FOLDER="$(CURDIR)/dags" AIRFLOW__CORE__PLUGINS_FOLDER="$(CURDIR)/plugins" \
	AIRFLOW__API__HOST=127.0.0.1 AIRFLOW__API__PORT=$(PORT) AIRFLOW__API__BASE_URL=http://127.0.0.1:$(PORT) \
	AIRFLOW__CORE__LOAD_EXAMPLES=False AIRFLOW__CORE__PARALLELISM=4 GX_ANALYTICS_ENABLED=False \
	$(BIN)/airflow standalone

# The README's screenshots (docs/screenshots/*.png): a sample night, the Airflow API server with the
# dashboard plugin, headless Chromium (see scripts/screenshots.py); scratch files under data/screenshots/
screenshots: $(STAMP)
	scripts/ensure-system-deps.sh
	$(BIN)/python scripts/screenshots.py

clean:
	rm -rf $(VENV) data
