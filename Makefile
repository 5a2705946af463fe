# Two commands on a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The official ngrok clients live in environments of their own: the agent SDK
# (`ngrok`) and the REST client (`ngrok-api`) install into the same import package.
NGROK_API_ENV := .venvs/ngrok-api
NGROK_SDK_ENV := .venvs/ngrok-sdk
# The ngrok v2 agent binary (2.3.41), as npm ships it, for protocol version 2.
NGROK_BIN_DIR := .venvs/ngrok-bin
# The browser of the dashboard's end-to-end tests: Debian's, since Playwright's own
# download is unreachable from the build machines (the tests launch this executable).
CHROMIUM := /usr/bin/chromium
# docs/deploy.md's unit file is checked with `systemd-analyze verify` (Debian's systemd package;
# installing it starts nothing: the tests only run the analyzer).
SYSTEMD_ANALYZE := /usr/bin/systemd-analyze
# The ACME tests' CA (Debian's pebble, with pebble-challtestsrv for its DNS) and the DNS
# server the DNS-01 tests update by RFC 2136 (Debian's knot).
PEBBLE := /usr/bin/pebble
KNOT := /usr/sbin/knotd
# Debian's OpenSSH client, the SSH tunnel gateway's tests' client (tests/ssh).
SSH_CLIENT := /usr/bin/ssh
# What the ACME tests verify Burrow's certificates with, against pebble's root.
CURL := /usr/bin/curl
# The official Node REST client, @ngrok/ngrok-api 0.11 (it sends the id in PATCH bodies).
NGROK_API_NODE_DIR := .venvs/ngrok-api-node
# The npm agent SDK, @ngrok/ngrok 1.7 (Traffic Policy, pooling), beside the PyPI one.
NGROK_NODE_SDK_DIR := .venvs/ngrok-node-sdk

.PHONY: serve test test-fast lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,postgres]'
	@# Bytecode written once: each of the suite's many `burrow` processes starts faster (the
	@# environment may set PYTHONDONTWRITEBYTECODE, which stops Python writing it on import).
	$(PY) -m compileall -q src >/dev/null
	touch $@

$(NGROK_SDK_ENV)/.installed:
	$(PYTHON) -m venv $(NGROK_SDK_ENV)
	$(NGROK_SDK_ENV)/bin/pip install -q "ngrok>=1.4,<1.5"
	touch $@

$(NGROK_BIN_DIR)/.installed:
	mkdir -p $(NGROK_BIN_DIR)
	npm install --silent --no-audit --no-fund --prefix $(NGROK_BIN_DIR) @expo/ngrok-bin-linux-x64@2.3.41
	touch $@

$(NGROK_NODE_SDK_DIR)/.installed:
	mkdir -p $(NGROK_NODE_SDK_DIR)
	npm install --silent --no-audit --no-fund --prefix $(NGROK_NODE_SDK_DIR) @ngrok/ngrok@1.7.0
	touch $@

$(NGROK_API_NODE_DIR)/.installed:
	mkdir -p $(NGROK_API_NODE_DIR)
	npm install --silent --no-audit --no-fund --prefix $(NGROK_API_NODE_DIR) @ngrok/ngrok-api@0.11.0
	touch $@

$(NGROK_API_ENV)/.installed:
	$(PYTHON) -m venv $(NGROK_API_ENV)
	$(NGROK_API_ENV)/bin/pip install -q 'ngrok-api==0.19.0'
	touch $@

$(CHROMIUM):
	apt-get update -qq && apt-get install -y -qq chromium

$(SYSTEMD_ANALYZE):
	apt-get update -qq && apt-get install -y -qq systemd

$(PEBBLE):
	apt-get update -qq && apt-get install -y -qq pebble

$(KNOT):
	apt-get update -qq && apt-get install -y -qq knot

$(SSH_CLIENT):
	apt-get update -qq && apt-get install -y -qq openssh-client

$(CURL):
	apt-get update -qq && apt-get install -y -qq curl

serve: $(VENV)/.installed
	$(VENV)/bin/burrow serve $(ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy --strict src/burrow

test: $(VENV)/.installed $(NGROK_API_ENV)/.installed $(NGROK_API_NODE_DIR)/.installed \
		$(NGROK_SDK_ENV)/.installed $(NGROK_NODE_SDK_DIR)/.installed $(NGROK_BIN_DIR)/.installed $(CHROMIUM) \
		$(SYSTEMD_ANALYZE) $(PEBBLE) $(KNOT) $(SSH_CLIENT) $(CURL) lint
	$(VENV)/bin/pytest -q

# The in-process tier on SQLite and everything else that needs nothing but Burrow (under a
# minute); `make test` runs this, the same API tests on PostgreSQL (the `postgres` tier) and
# the e2e tier (official clients, agent SDK and binary, benchmarks).
test-fast: $(VENV)/.installed lint
	$(VENV)/bin/pytest -q -n auto -m "not e2e and not postgres"

bench: $(VENV)/.installed $(NGROK_SDK_ENV)/.installed
	$(PY) bench/api.py
	$(PY) bench/edge.py
	$(PY) bench/filters.py
	$(PY) bench/cluster.py

clean:
	rm -rf $(VENV) .venvs .burrow
