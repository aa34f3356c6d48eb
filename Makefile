# `make test` and `make main` set everything up on first use (tools/install.sh).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test
setup: $(VENV)/.installed

$(VENV)/.installed: setup.py tools/install.sh
	bash tools/install.sh $(VENV)
	touch $@

test: setup
	$(PY) -m pytest -q
