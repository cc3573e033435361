# The two commands: `make lab` (open the notebooks) and `make test` (run every test).
# Both create .venv on first use, with nothing but python3 (3.10+) on the machine.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

# JupyterLab refuses to run as root unless told; on a machine with no screen it just prints the URL.
# No news feed or update check: no pop-up asking about them in front of a class, no request out.
LAB_FLAGS := --ip=127.0.0.1 --notebook-dir=notebooks --LabApp.news_url=None \
	--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate
ifeq ($(shell id -u 2>/dev/null),0)
LAB_FLAGS += --allow-root
endif
ifeq ($(DISPLAY)$(WAYLAND_DISPLAY)$(shell uname -s | grep -c Darwin),0)
LAB_FLAGS += --no-browser
endif

.PHONY: lab test lint format bench clean

lab: $(VENV)/.installed-lab
	$(BIN)/jupyter lab $(LAB_FLAGS)

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-test
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(VENV)/.installed-test
	$(BIN)/python -m bench --quick

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[$*]'
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
