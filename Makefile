# The two commands of the README: `make demo` and `make test` (both install first).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# Every plugin distribution under plugins/ (folders starting with _ are templates, not installed).
PLUGINS := $(patsubst %/pyproject.toml,%,$(filter-out plugins/_%,$(wildcard plugins/*/pyproject.toml)))
STAMP  := $(VENV)/.installed
# What `make demo` needs (the core, every plugin, the main job's plot extra; no test extras): a fresh
# clone's demo does not wait for the test references (triton alone is a 290 MB wheel), and the
# editable builds share the venv's setuptools instead of building one isolated env each (52 s -> 11 s).
DEMO_STAMP := $(VENV)/.installed-demo
# setuptools prints a 10-line "BuildBackendWarning: Editable installation" banner for every editable
# package it builds (a reminder that a folder named like a package shadows it); the installs below
# silence just that warning, so a newcomer sees what matters.
QUIET_EDITABLE := PYTHONWARNINGS='ignore:Editable installation'

.PHONY: install demo test lint test-core test-plugins test-integration docs clean

# Both installs upgrade pip first: the pip a venv ships with (23.x) does not match a plugin's dependency
# on another plugin (optreg-muon needs optreg-adam and optreg-sign) to its editable install in the
# same command, so a fresh clone's install failed.
$(STAMP): pyproject.toml $(addsuffix /pyproject.toml,$(PLUGINS))
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(QUIET_EDITABLE) $(PY) -m pip install --quiet -e '.[test,docs]' $(foreach p,$(PLUGINS),-e '$(p)[test]')
	touch $(STAMP)

install: $(STAMP)

$(DEMO_STAMP): pyproject.toml $(addsuffix /pyproject.toml,$(PLUGINS))
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet 'setuptools>=77' wheel
	$(QUIET_EDITABLE) $(PY) -m pip install --quiet --no-build-isolation -e . $(foreach p,$(filter-out plugins/train,$(PLUGINS)),-e '$(p)') \
		-e 'plugins/train[plot]'
	touch $(DEMO_STAMP)

# `make demo`: `optreg compare` over specs of different families on the default task (a small
# character-level transformer on the standard library's own source), one spec per family; the first
# spec's [train] table applies to all. Outputs and plots in runs/demo.
# One thread: these tiny models gain little from a second one and lose a lot when the cores are busy.
DEMO_SPECS ?= specs/adamw_cosine.toml specs/skip_step_adamw_cosine.toml specs/lion_cosine.toml specs/muon.toml \
              specs/schedule_free_adamw.toml specs/prodigy.toml specs/sgd_momentum.toml
DEMO_ARGS  ?= --out runs/demo --overwrite --threads 1

demo: $(DEMO_STAMP)
	$(VENV)/bin/optreg compare $(DEMO_SPECS) $(DEMO_ARGS)

lint: install
	$(PY) -m ruff check .

test-core: install
	$(PY) -m pytest registry/tests

test-plugins: install
	@set -e; for p in $(PLUGINS); do echo "== $$p"; (cd $$p && $(CURDIR)/$(PY) -m pytest tests); done

test-integration: install
	$(PY) -m pytest tests

# `make test`: lint and every suite (core, each plugin, integration), even after one fails, then one
# summary; the exit status is non-zero when any failed.
SUITES := lint registry $(PLUGINS) tests

test: install
	@failed=""; summary=""; \
	for suite in $(SUITES); do \
	  echo "== $$suite"; start=$$(date +%s); \
	  case $$suite in \
	    lint) $(PY) -m ruff check . ;; \
	    registry) $(PY) -m pytest registry/tests ;; \
	    tests) $(PY) -m pytest tests ;; \
	    *) (cd $$suite && $(CURDIR)/$(PY) -m pytest tests) ;; \
	  esac; \
	  rc=$$?; secs=$$(( $$(date +%s) - start )); \
	  if [ $$rc -eq 0 ]; then result=ok; else result=FAILED; failed="$$failed $$suite"; fi; \
	  summary="$$summary$$(printf '  %-6s %-22s %4d s' $$result $$suite $$secs)\n"; \
	done; \
	echo "== summary"; printf "$$summary"; \
	if [ -n "$$failed" ]; then echo "make test: FAILED:$$failed"; exit 1; fi; \
	echo "make test: every suite passed"

# The docs site (mkdocs + Material) into site/; reference pages are generated from the registry.
docs: install
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) build dist site .pytest_cache .ruff_cache
