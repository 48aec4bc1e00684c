# medsynth: two commands do all set-up on a fresh machine.
#   make demo   # create .venv, install, run the pipeline on the bundled sample -> runs/demo
#   make test   # create .venv, install, run ruff and the test suite
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: setup demo test lint manifests

setup:
	bash scripts/setup_env.sh

demo: setup
	$(BIN)/medsynth demo -o runs/demo

lint: setup
	$(BIN)/ruff check medsynth tests scripts examples
	$(BIN)/ruff format --check medsynth tests scripts examples
	$(BIN)/lint-imports  # the pipeline's layer order and no import cycle: [tool.importlinter] in pyproject.toml

# two pytest workers, one thread each (tests/conftest.py): the suite is mostly single-threaded
TEST_WORKERS ?= 2

test: lint
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# Manifests of ../shared/data committed in data_manifests/ (paths relative to them).
manifests: setup
	$(BIN)/medsynth manifest build ../shared/data/brats2013_small -o data_manifests/brats2013_small.json
	$(BIN)/medsynth manifest build ../shared/data/healthy/synthseg_label_maps --layout freesurfer -o data_manifests/synthseg.json
	$(BIN)/medsynth manifest build ../shared/data/healthy/colin27 --layout t1 --include 'ch2bet*' -o data_manifests/colin27.json
