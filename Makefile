# The two commands a new user runs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install bench clean fashion-mnist results browser

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Fashion-MNIST (real idx files) for the standard-dataset tests; skipped with a message where it cannot be installed
FASHION := /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz

fashion-mnist:
	@test -f $(FASHION) || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; } ; } \
		|| echo "note: dataset-fashion-mnist not installed (needs apt-get and root); its tests will be skipped"

# Debian's headless Chromium for the explorer's browser test (Playwright drives it; no browser download)
BROWSER := /usr/lib/chromium/chromium-headless-shell

browser:
	@test -x $(BROWSER) || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium-headless-shell; } ; } \
		|| echo "note: chromium-headless-shell not installed (needs apt-get and root); the browser test will be skipped"

test: $(STAMP) fashion-mnist browser
	$(PY) -m pytest tests

demo: $(STAMP)
	$(VENV)/bin/hiclip demo --out demo_out

# docs/results.md and the README's headline block, from the demo's folder (add study / fine-tuning folders to RESULTS)
RESULTS ?= demo_out

results: $(STAMP)
	$(VENV)/bin/hiclip report $(RESULTS) --out docs/results.md --readme README.md

bench: $(STAMP)
	$(PY) benchmarks/bench_model.py

clean:
	rm -rf $(VENV) demo_out
