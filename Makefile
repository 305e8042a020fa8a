# The two commands of the README:
#   make demo   synthesize chest X-rays, run the whole pipeline, print a summary
#   make test   run the test suite
# Both create .venv with Python 3.10 and install the pinned set on first use.
# Override the interpreter with PYTHON=/path/to/python3.10.

PYTHON ?= python3.10
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DATA ?= build/demo-data
DEMO_OUT ?= build/demo

.PHONY: install browser demo test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.py constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null || { \
	  echo "error: this project needs Python 3.10 (TFX 1.16 supports 3.9-3.10), and"; \
	  echo "'$(PYTHON)' is $$($(PYTHON) --version 2>/dev/null || echo 'not a working interpreter here')."; \
	  echo "Install Python 3.10, or point PYTHON at one:"; \
	  echo "  make $(MAKECMDGOALS) PYTHON=/path/to/python3.10"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --constraint constraints.txt --editable '.[test]'
	touch $@

# The demo's floors suit 64-px synthetic images; the defaults are set for
# real X-rays (see the README on blessing floors).
demo: install
	$(BIN)/cxr synth $(DEMO_DATA) --n 600 --size 256 --seed 0
	$(BIN)/cxr run --data $(DEMO_DATA) --task binary --output $(DEMO_OUT) \
	  --models cnn_aug --image-size 64 --epochs 40 --min-auc 0.9 --min-recall 0.75

# The report test renders the HTML report in headless Chromium (Debian's
# package); installed here when missing and we may (root, apt-get).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium (Debian package) for the report test"; \
	    apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "error: the tests need chromium: sudo apt-get install chromium"; \
	    exit 1; \
	  fi; }

test: install browser
	$(BIN)/python -m pytest tests

# Every benchmark of bench/__init__.py, side by side; rewrites the
# "Benchmarks of record" part of BENCHMARKS.md. Not part of the tests.
bench: install
	$(BIN)/cxr bench all --record

clean:
	rm -rf build
