# Conveyor's front door. `make run` and `make test` set the machine up by themselves.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.conveyor-installed

export GRPC_ENABLE_FORK_SUPPORT = false
export TF_CPP_MIN_LOG_LEVEL = 2

.PHONY: setup data run lint test test-fast test-slow bench bench-scale bench-serving bench-tuning bench-cbpe serve monitor tensorboard notebooks lock clean

## setup: host prerequisites (glibc >= 2.39), .venv from requirements.lock, the project (editable)
setup: $(STAMP) data

$(STAMP): requirements.lock setup.py pyproject.toml scripts/setup_host.sh
	bash scripts/setup_host.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r requirements.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

## data: materialise the default spans from the installed tfx wheel (idempotent)
data: $(STAMP)
	$(PY) -m data.materialize

## run: the whole pipeline on the bundled spans (extra flags: make run ARGS="--train-steps 500")
run: setup
	$(PY) local_runner.py $(ARGS)

## lint: ruff over the whole checkout and mypy where types pay (both configured in pyproject.toml)
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

## test: lint, then the default test suite, its files spread over TEST_WORKERS processes (1: one process); also
## installs the Debian packages the tests use: chromium (the run report is checked in it) and
## mariadb-server (a throwaway MariaDB for ML Metadata on MySQL)
TEST_WORKERS ?= 2
test: export CONVEYOR_APT_PACKAGES := $(CONVEYOR_APT_PACKAGES) chromium mariadb-server
test: setup lint
	bash scripts/setup_host.sh
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

## test-fast: the fast tier, every test tests/conftest.py marks `unit` (no pipeline run, no server:
## tests/tiers.py says how it tells), on TEST_WORKERS processes: 99-160 s on 2 shared cores (125 CPU s).
## Installs chromium (the reports' escaping is checked in it)
test-fast: export CONVEYOR_APT_PACKAGES := $(CONVEYOR_APT_PACKAGES) chromium
test-fast: setup
	bash scripts/setup_host.sh
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile -m "unit and not slow" $(PYTEST_ARGS)

## test-slow: the long tests the default suite leaves out (pytest -m slow), e.g. nightly:
## kill -9 of a real run after every component, fuzzing the server with thousands of mutated requests
test-slow: setup
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

## tensorboard: TensorBoard on 127.0.0.1:6006 for the newest trained model (ARGS="--port 0 --home DIR")
tensorboard: setup
	$(PY) -m conveyor.cli tensorboard $(ARGS)

## notebooks: JupyterLab on 127.0.0.1:8888 for notebooks/, reading outputs/ (ARGS="--home DIR")
notebooks: setup
	$(PY) -m conveyor.cli notebooks $(ARGS)

## bench: Conveyor vs the official TFX taxi template (made from the installed wheel) side by side,
## `make run` cold, a no-change re-run, and the cost per new span over 6 generated spans (8-21 min on 2 cores)
bench: setup
	$(PY) -m benchmarks.pipeline_bench $(ARGS)

## bench-scale: 100k / 1M / 5M synthetic trips through ExampleGen, StatisticsGen, validation and
## Transform, in_memory and multi_processing, vs a pandas describe() (long: about 50 minutes)
bench-scale: setup
	$(PY) -m benchmarks.scale_bench $(ARGS)

## bench-tuning: the tuned model against the default on the same eval data, 3 seeds: `conveyor run` on the
## two default spans, then `conveyor tune` (about 12 minutes on 2 cores; ARGS="--max-trials N --seeds 0 1 2 3")
bench-tuning: setup
	$(PY) -m benchmarks.tuning_bench $(ARGS)

## bench-serving: server latency/throughput vs the in-process SavedModel call, and hot swaps under load
bench-serving: setup
	$(PY) -m benchmarks.serving_bench $(ARGS)

## bench-cbpe: estimated (CBPE, before labels) against realized accuracy on shifted windows of held-out
## trips: `conveyor run` on the two default spans, then the monitor's estimate per window (about 3 minutes)
bench-cbpe: setup
	$(PY) -m benchmarks.cbpe_check $(ARGS)

## serve: the model server on the models `make run` pushed (127.0.0.1:8501)
serve: setup
	$(PY) -m conveyor.cli serve $(ARGS)

## monitor: the monitoring job over the last day of the request log
monitor: setup
	$(PY) -m conveyor.cli monitor $(ARGS)

## lock: re-resolve requirements.in into requirements.lock in a throw-away venv
lock:
	bash scripts/setup_host.sh
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install -q --disable-pip-version-check -r requirements.in
	.lock-venv/bin/pip freeze --all --exclude-editable | grep -v '^pip==' > requirements.lock
	rm -rf .lock-venv

clean:
	rm -rf outputs .pytest_cache
