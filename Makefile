# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: demo demo-embedded test lint chaos bench bench-cluster bench-failover bench-partiql bench-gateway clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# The benchmark peers' Python driver (psycopg) on top of the test tools. etcd and
# PostgreSQL themselves are system packages: benchmarks/peers.py says how to install them.
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $(BENCH_STAMP)

demo: $(STAMP)
	$(PY) -m cluster.demo

demo-embedded: $(STAMP)
	$(PY) -m core.demo

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) benchmarks/engine.py

bench-cluster: $(BENCH_STAMP)
	$(PY) benchmarks/cluster.py

# Every shipped chaos experiment at full length, each on a fresh cluster (reports in out/chaos).
chaos: $(STAMP)
	@set -e; for f in configs/chaos/*.toml; do \
		$(PY) -m chaos run $$f --out out/chaos/$$(basename $$f .toml); done

bench-failover: $(STAMP)
	$(PY) benchmarks/failover.py --trials 10

bench-partiql: $(STAMP)
	$(PY) benchmarks/partiql.py

# pyqldb through `strand serve` (embedded and cluster) next to the native API; builds
# pyqldb's pinned environment on first use (tests/qldb_venv.py).
bench-gateway: $(STAMP)
	$(PY) benchmarks/gateway.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .hypothesis
