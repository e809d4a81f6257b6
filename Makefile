# The two commands: `make demo` runs the pipeline locally, `make test` runs every test.
# Both set up what they need: system packages (Java, Maven, Chromium, Go) if missing, the venv, the Kafka jars,
# and a Kubernetes API server built from source (minutes, once per machine; cached in ~/.cache/aiops-sentry).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test setup system-deps kafka-jars kube-binaries clean

demo: setup
	$(BIN)/aiops demo

test: setup
	$(BIN)/python -m pytest

setup: system-deps $(STAMP) kafka-jars kube-binaries

system-deps:
	@if ! command -v java >/dev/null || ! command -v mvn >/dev/null || ! test -x /usr/bin/chromium; then \
	  echo "installing Java 17, Maven and Chromium (apt)"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q openjdk-17-jre-headless maven chromium; \
	fi
	@if ! command -v go >/dev/null && ! test -x /usr/local/go/bin/go; then \
	  echo "installing Go (apt): Go 1.21 or newer fetches the toolchain Kubernetes asks for by itself"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q golang-go; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11 or newer is needed")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

kafka-jars: $(STAMP)
	$(BIN)/python -m aiops.kafka_local --fetch-only

# etcd, kube-apiserver, kube-controller-manager and kustomize for the GKE and deploy/ tests; skipped when built.
kube-binaries: $(STAMP)
	$(BIN)/python -m aiops.kube_local --build-only

clean:
	rm -rf $(VENV) .aiops build *.egg-info
