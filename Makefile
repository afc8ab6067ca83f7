# The two commands a fresh machine needs: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean wasm-toolchain automerge-js automerge-plugin install-automerge \
	secrets-plugin install-secrets

# The install also compiles sandbox/_guestcall.c and wire/_msgwalk.c (gcc and the Python
# headers): a changed C file rebuilds them.
$(STAMP): pyproject.toml sandbox/_guestcall.c wire/_msgwalk.c wire/msgwalk.h
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# Rust with the wasm32 target, from Debian's packages when no toolchain here has it.
wasm-toolchain: $(STAMP)
	deploy/wasm-toolchain.sh $(BIN)/python

# The real Automerge client for tests/automerge and the benchmark: Debian's nodejs/npm and the
# pinned @automerge/automerge (tests/automerge/js/package.json).
automerge-js:
	deploy/automerge-js.sh

# The first-party Automerge plugin (plugins/automerge, docs/AUTOMERGE.md).
automerge-plugin: $(STAMP) wasm-toolchain
	PATH="$(CURDIR)/$(BIN):$$PATH" cargo aspen-plugin build --release --path plugins/automerge

# Build it and install it on the cluster named by ASPEN_CLUSTER / ASPEN_COOKIE.
install-automerge: automerge-plugin
	$(BIN)/aspen-cli plugin install plugins/automerge/target/wasm32-unknown-unknown/release/aspen_automerge.wasm \
		--manifest plugins/automerge/plugin.json --wait

# The first-party secrets plugin (plugins/secrets, docs/SECRETS.md): KV v2 and Transit.
secrets-plugin: $(STAMP) wasm-toolchain
	PATH="$(CURDIR)/$(BIN):$$PATH" cargo aspen-plugin build --release --path plugins/secrets

# Build it and install it on the cluster named by ASPEN_CLUSTER / ASPEN_COOKIE.
install-secrets: secrets-plugin
	$(BIN)/aspen-cli plugin install plugins/secrets/target/wasm32-unknown-unknown/release/aspen_secrets.wasm \
		--manifest plugins/secrets/plugin.json --wait

run: $(STAMP) wasm-toolchain
	$(BIN)/python -m deploy.demo

test: $(STAMP) wasm-toolchain automerge-js automerge-plugin secrets-plugin
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q tests

# The etcd comparison needs Debian's etcd-server (apt-get install etcd-server) and aetcd.
bench: $(STAMP) automerge-js automerge-plugin secrets-plugin
	$(BIN)/pip install -q -e '.[dev,bench]'
	$(BIN)/python benchmarks/kv_bench.py $$(command -v etcd >/dev/null && echo --vs-etcd)
	$(BIN)/python benchmarks/sandbox_bench.py
	$(BIN)/python benchmarks/plugin_bench.py
	$(BIN)/python benchmarks/dispatch_bench.py
	$(BIN)/python benchmarks/large_state_bench.py
	$(BIN)/python benchmarks/automerge_bench.py
	$(BIN)/python benchmarks/secrets_bench.py

clean:
	rm -rf $(VENV) build *.egg-info sandbox/_guestcall*.so wire/_msgwalk*.so
