# The two commands: `make demo` runs the pipeline locally, `make test` runs every test.
# Both set up what they need: system packages (Java, Maven, Chromium) if missing, the venv, the Kafka jars.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test setup system-deps kafka-jars clean

demo: setup
	$(BIN)/aiops demo

test: setup
	$(BIN)/python -m pytest

setup: system-deps $(STAMP) kafka-jars

system-deps:
	@if ! command -v java >/dev/null || ! command -v mvn >/dev/null || ! test -x /usr/bin/chromium; then \
	  echo "installing Java 17, Maven and Chromium (apt)"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q openjdk-17-jre-headless maven chromium; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11 or newer is needed")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

kafka-jars: $(STAMP)
	$(BIN)/python -m aiops.kafka_local --fetch-only

clean:
	rm -rf $(VENV) .aiops build *.egg-info
