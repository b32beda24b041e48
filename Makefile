# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-test

.PHONY: demo test lint docs docs-check bench clean

# Keep the byte-compiled modules that the first imports write (see $(STAMP)).
export PYTHONDONTWRITEBYTECODE :=

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# --no-compile: pip would byte-compile every installed module (sympy, scipy, pandas, ...),
# about a minute on 2 cores; Python compiles the modules it imports on first use instead
# (with PYTHONDONTWRITEBYTECODE cleared below, so that the .pyc files are kept).
$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet --no-compile -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	MPLBACKEND=Agg $(PY) examples/quickstart.py

# ruff (lint + formatting) and the type checker; new type errors fail, the ones recorded in
# .basedpyright/baseline.json do not (see pyproject.toml, [tool.basedpyright]).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/basedpyright

# The documentation site: render the tutorials' figures (examples in fast mode, skipped when
# unchanged), then build site/ with every warning an error. docs-check builds without
# rendering (tutorial pages say how to get their figures), for `make test`.
docs: $(STAMP)
	MPLBACKEND=Agg $(PY) tools/docs/render_figures.py
	$(VENV)/bin/mkdocs build --strict

docs-check: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir build/site-check

# The type checker (~50 s) and the docs build (~15 s), both single-threaded, run beside the
# test suite; any of the three failing fails.
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	@mkdir -p build; $(VENV)/bin/basedpyright > build/basedpyright.log 2>&1 & typing=$$!; \
	$(MAKE) --no-print-directory docs-check > build/docs-check.log 2>&1 & docs=$$!; \
	MPLBACKEND=Agg $(PY) -m pytest -n 2 --dist worksteal --durations=15; tests=$$?; \
	wait $$typing; typed=$$?; echo "basedpyright:"; cat build/basedpyright.log; \
	wait $$docs; built=$$?; echo "docs-check (mkdocs build --strict): exit $$built"; \
	cat build/docs-check.log; \
	[ $$tests -eq 0 ] && [ $$typed -eq 0 ] && [ $$built -eq 0 ]

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info
