# Everything a fresh machine needs, made on demand: `make demo` and `make test` do their own set-up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMPS := .stamps
PYTEST_ARGS ?=

.PHONY: demo test test-fast test-integration setup jars clean

demo: setup
	$(BIN)/streamscore demo

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMPS)/venv
	$(BIN)/python -m pytest -m "not integration" $(PYTEST_ARGS)

test-integration: setup
	$(BIN)/python -m pytest -m integration $(PYTEST_ARGS)

setup: $(STAMPS)/venv $(STAMPS)/jars

$(STAMPS)/venv: setup.py
	@mkdir -p $(STAMPS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

jars: $(STAMPS)/jars
ENGINE_SRC := $(shell find jvm/engine/src -name '*.java' 2>/dev/null)
$(STAMPS)/jars: jvm/pom.xml jvm/flink/pom.xml jvm/kafka/pom.xml jvm/engine/pom.xml $(ENGINE_SRC)
	@mkdir -p $(STAMPS)
	rm -rf .jars
	mvn -q -B -f jvm/pom.xml package dependency:copy-dependencies
	@touch $@

clean:
	-$(BIN)/streamscore kafka down 2>/dev/null
	rm -rf $(STAMPS) .jars .run
