# decaywatch: the commands of the quick start are `make demo`, `make test` and `make lint`.
# They set up what they need first: a virtualenv with the project, its test and
# lint tools and the confluent-kafka client (the tests run the service on both
# clients), and (demo and test) Apache Kafka's jars, fetched once from Maven
# Central with Maven.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint unit integration e2e bench clean

setup: $(STAMP)
	@$(BIN)/decaywatch kafka fetch
	@sh deploy/prometheus/install.sh

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test,lint,confluent,parquet]'
	@touch $(STAMP)

demo: setup
	$(BIN)/decaywatch demo

test: setup
	$(BIN)/python -m pytest

# Formatting, lint and types: the settings are in pyproject.toml ([tool.ruff], [tool.mypy]).
lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

integration: setup
	$(BIN)/python -m pytest tests/integration

e2e: setup
	$(BIN)/python -m pytest tests/e2e

# The detection benchmark (pytest), then consumption throughput on a local broker (about 10 minutes on 2 cores),
# produce-to-/metrics latency at 10,000 events/s (about 2 minutes), the memory of 1,000 and 10,000 models, and
# the label join: joined-vs-inline throughput and 10 million pending predictions (about 3 minutes), and false alarms
# across 1,000 stable models against the policy's prediction (about 3 minutes).
bench: setup
	$(BIN)/python -m pytest tests/benchmarks -s
	$(BIN)/python -m tests.benchmarks.bench_throughput
	$(BIN)/python -m tests.benchmarks.bench_latency
	$(BIN)/python -m tests.benchmarks.bench_fleet_memory
	$(BIN)/python -m tests.benchmarks.bench_join
	$(BIN)/python -m tests.benchmarks.bench_fleet_alarms

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .mypy_cache .ruff_cache
