# The README's two commands: `make run` (set-up, then the local demo stack) and `make test`
# (set-up, then every test against a real local Kafka that this target starts and stops).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Port of the broker `make test` starts (kept off 9092 so a running `make run` is not disturbed).
TEST_KAFKA_PORT ?= 19092

.PHONY: run test test-deploy install install-test unit lint bench clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install --quiet -c constraints.txt -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

run: install
	$(BIN)/event-bridge dev --demo

test: install-test
	TEST_KAFKA_PORT=$(TEST_KAFKA_PORT) BIN=$(BIN) bash scripts/run-tests.sh

$(VENV)/.installed-deploy: $(VENV)/.installed-test
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,deploy]'
	touch $@

# The deployment for real (docs/deploy.md): chart lint + render + schema validation, alert rule
# tests, compose config, the image, and the compose stack end to end. Needs root (apt-get
# install docker.io debootstrap, dockerd) and Go (helm, docker compose, promtool).
test-deploy: $(VENV)/.installed-deploy
	BIN=$(BIN) bash scripts/deploy/test-deploy.sh

# Unit and functional tests only: no broker needed (the one case where broker tests may be left out).
unit: install-test
	$(BIN)/python -m pytest tests/unit tests/functional -q

lint: install-test
	$(BIN)/lint-imports

$(VENV)/.installed-bench: $(VENV)/.installed-test
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,bench]'
	touch $@

bench: $(VENV)/.installed-bench
	$(BIN)/python -m bench --profile

clean:
	rm -rf $(VENV) .pytest_cache
