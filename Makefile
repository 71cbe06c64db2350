# Two commands a new user needs: `make demo` and `make test`. Each sets everything up first.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
ANVIL := node_modules/.bin/anvil
ZKNODE := .cache/zk-node
SNARKJS := $(ZKNODE)/node_modules/.bin/snarkjs
PTAU := .cache/zk-ceremony/pot12.ptau
JOBS ?= 2

.PHONY: demo test test-fast bench examples setup data node browser zk-tools zk-witness native-prover lint clean

demo: setup
	$(BIN)/fedledger run --config examples/demo.toml --out runs/demo
	$(BIN)/fedledger report runs/demo   # audits first (exit 5 if the audit fails) and shows the verdict on the page
	@echo "results: runs/demo/results.json   report: runs/demo/report.html"

test: setup zk-tools
	$(BIN)/python -m pytest -n $(JOBS) --dist loadfile

test-fast: setup
	$(BIN)/python -m pytest -n $(JOBS) --dist loadfile -m "not slow"

# The article's settings and the Flower example, each end to end (short runs: --plain where the ledger is not the
# point); results in runs/<name>/results.json, the Flower run audited and reported.
examples: setup
	$(BIN)/fedledger run --plain --config examples/healthcare.toml --baseline --quiet
	$(BIN)/fedledger run --plain --config examples/finance.toml --baseline --quiet
	$(BIN)/fedledger run --plain --config examples/device_fleet.toml --baseline --quiet
	$(BIN)/fedledger run --plain --config examples/transformer.toml --baseline --quiet
	rm -rf runs/flower && $(BIN)/python examples/flower/run.py --out runs/flower --nodes 4 --rounds 3
	$(BIN)/fedledger report runs/flower

# Flower (the `flower` extra, installed by setup) also serves the benchmark's SecAgg+ comparison.
bench: setup
	$(BIN)/python -m bench.run $(BENCH_ARGS)

setup: $(STAMP) data node browser zk-witness native-prover

# circom2 (npm) lays out each circuit's wires once, so that update witnesses are computed natively and proved
# by our own Groth16 prover (src/fedledger/zk/native/g16.cpp), which g++ builds once per machine.
zk-witness: $(SNARKJS)
native-prover: $(STAMP)
	@$(BIN)/python -m fedledger.zk.native_groth16 build

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null || { echo "error: $(PY) is needed (Python 3.11)"; exit 1; }
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,flower]'
	touch $@

# Fashion-MNIST comes from Debian's dataset-fashion-mnist package.
data: $(FMNIST)
$(FMNIST):
	@if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	elif command -v sudo >/dev/null && command -v apt-get >/dev/null; then \
	  sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	else \
	  echo "note: cannot install Debian's dataset-fashion-mnist here; fashion_mnist runs and tests are skipped"; \
	fi

# Debian's chromium renders the HTML report in the tests (headless: what a user sees, and a screenshot).
browser:
	@if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	elif command -v sudo >/dev/null && command -v apt-get >/dev/null; then \
	  sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
	  echo "note: cannot install Debian's chromium here; the report's browser tests are skipped"; \
	fi

# anvil (the default chain) ships as a binary inside the npm package @foundry-rs/anvil.
node: $(ANVIL)
$(ANVIL): package.json
	@if command -v npm >/dev/null; then npm install --no-package-lock --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "note: npm not found; the chain falls back to --chain memory (py-evm)"; fi

# snarkjs and circom2 (npm) cross-check our Groth16 proofs and run the ceremony path in the tests; a small
# development Powers of Tau (2^12) is made once per checkout, never per run.
zk-tools: $(PTAU)
$(SNARKJS):
	@if command -v npm >/dev/null; then \
	  mkdir -p $(ZKNODE) && printf '{"private": true}\n' > $(ZKNODE)/package.json && \
	  npm install --prefix $(ZKNODE) --no-package-lock --no-audit --no-fund --loglevel=error snarkjs@0.7.6 circom2@0.2.23; \
	else echo "note: npm not found; the snarkjs cross-check and ceremony tests are skipped"; fi
$(PTAU): $(SNARKJS)
	@if [ -x $(SNARKJS) ]; then \
	  mkdir -p $(dir $(PTAU)) && S=$(abspath $(SNARKJS)) && cd $(dir $(PTAU)) && \
	  $$S powersoftau new bn128 12 p0.ptau >/dev/null && \
	  $$S powersoftau contribute p0.ptau p1.ptau --name=dev -e=fedledger-development >/dev/null && \
	  $$S powersoftau prepare phase2 p1.ptau pot12.ptau >/dev/null && rm -f p0.ptau p1.ptau; fi

lint: setup
	$(BIN)/ruff check src tests bench

clean:
	rm -rf $(VENV) node_modules runs .pytest_cache
