# The two commands of the README: `make run` and `make test`.
# Both create .venv when it is missing and install the project (the engine and the JSRT plugin) into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint install

install: $(STAMP)

$(STAMP): pyproject.toml plugins/jsrt_res_mtnet/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]' -e plugins/jsrt_res_mtnet
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/mtl run examples/jsrt_res_mtnet

# -n auto: one pytest worker per core (pytest-xdist); --dist loadfile keeps a file's tests, and so its module
# fixtures, on one worker. Each worker runs torch on one thread (tests/conftest.py).
test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check mtl_core plugins tests bench
