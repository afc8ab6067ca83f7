# The two commands a fresh machine needs: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean wasm-toolchain

# The install also compiles sandbox/_guestcall.c (gcc and the Python headers): a changed C file
# rebuilds it.
$(STAMP): pyproject.toml sandbox/_guestcall.c
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# Rust with the wasm32 target, from Debian's packages when no toolchain here has it.
wasm-toolchain: $(STAMP)
	deploy/wasm-toolchain.sh $(BIN)/python

run: $(STAMP) wasm-toolchain
	$(BIN)/python -m deploy.demo

test: $(STAMP) wasm-toolchain
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q tests

# The etcd comparison needs Debian's etcd-server (apt-get install etcd-server) and aetcd.
bench: $(STAMP)
	$(BIN)/pip install -q -e '.[dev,bench]'
	$(BIN)/python benchmarks/kv_bench.py $$(command -v etcd >/dev/null && echo --vs-etcd)
	$(BIN)/python benchmarks/sandbox_bench.py
	$(BIN)/python benchmarks/plugin_bench.py
	$(BIN)/python benchmarks/dispatch_bench.py
	$(BIN)/python benchmarks/large_state_bench.py

clean:
	rm -rf $(VENV) build *.egg-info sandbox/_guestcall*.so
