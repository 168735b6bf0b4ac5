# Two commands do everything on a fresh machine:
#   make demo   - virtualenv, install, sample intake, one nightly run on SQLite, summary
#   make test   - virtualenv, install, the whole test suite (starts PostgreSQL if it is down)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo demo-night2 test bench bench-large bench-province airflow-ui screenshots clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,spark]'
	touch $(STAMP)

install: $(STAMP)

# A clean demo: fresh sample intake, warehouse and exports under data/, then night 1 (the pairs are
# made at the programme's start, DEMO_PAIRED_ON, before the Mid-Autumn first-visit deadline), then
# the units' visit logs up to today and tonight's night (follow-through figures).
DEMO_PAIRED_ON ?= 2026-08-03
demo: $(STAMP)
	rm -rf data/intake data/exports data/warehouse.db data/truth
	$(BIN)/rosterlink sample --out data/intake --night 1 --truth data/truth/night1.json
	$(BIN)/rosterlink nightly --as-of $(DEMO_PAIRED_ON)
	$(BIN)/rosterlink sample --visits --out data/intake --truth data/truth/visits.json
	$(BIN)/rosterlink nightly

# After `make demo`: the departments drop night 2's files (adjustments, cadre changes, closures).
demo-night2: $(STAMP)
	$(BIN)/rosterlink sample --out data/intake --night 2 --truth data/truth/night2.json
	$(BIN)/rosterlink nightly --as-of $$(date -d tomorrow +%F)

test: $(STAMP)
	scripts/ensure-system-deps.sh
	$(BIN)/python -m pytest

# Benchmarks print figures (README: measured); none of them asserts a time.
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_read.py
	$(BIN)/python benchmarks/bench_linkage.py
	$(BIN)/python benchmarks/bench_pairing.py

bench-large: $(STAMP)
	$(BIN)/python benchmarks/bench_linkage.py --scale 100
	$(BIN)/python benchmarks/bench_pairing.py --province
	$(BIN)/python benchmarks/bench_soak.py --nights 30 --scale 10

# A province night (1,000,000 households, 100,000 cadres, 40 files) on PostgreSQL under Celery with
# 1 and 2 workers (README: Province scale); writing the intake alone takes about half an hour here
bench-province: $(STAMP)
	$(BIN)/python benchmarks/bench_province.py --workers 2,1 --workdir data/province --keep

# Airflow with its UI on http://127.0.0.1:8080 (see README: Running Airflow with its UI)
airflow-ui: $(STAMP)
	AIRFLOW_HOME=$(CURDIR)/data/airflow-ui AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags \
	AIRFLOW__CORE__LOAD_EXAMPLES=False AIRFLOW__CORE__PARALLELISM=4 $(BIN)/airflow standalone

# The README's screenshots (docs/screenshots/*.png): a sample night, the Airflow API server with the
# dashboard plugin, headless Chromium (see scripts/screenshots.py); scratch files under data/screenshots/
screenshots: $(STAMP)
	scripts/ensure-system-deps.sh
	$(BIN)/python scripts/screenshots.py

clean:
	rm -rf $(VENV) data
