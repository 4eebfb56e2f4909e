# The two set-up commands of the README: `make quickstart` and `make test` (and `make docs`).
# They share one .venv (Python >= 3.12) installed in layers, each with its own stamp:
# .venv/.core holds skimpact and its required dependencies (all the quickstart uses);
# .venv/.test and .venv/.docs add the test and docs extras of pyproject.toml on top.
# A change to pyproject.toml rebuilds the environment from scratch.
VENV := .venv
PY := $(VENV)/bin/python
export JAX_PLATFORMS ?= cpu

$(VENV)/.core: pyproject.toml
	rm -rf $(VENV)
	"$$(bash .ci/python)" -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.test: $(VENV)/.core
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

$(VENV)/.docs: $(VENV)/.core
	$(PY) -m pip install --quiet -e ".[docs]"
	touch $@

# Everything: the test and the docs extras.
$(VENV)/.installed: $(VENV)/.test $(VENV)/.docs
	touch $@

.PHONY: quickstart test test-fast docs
quickstart: $(VENV)/.core
	$(PY) examples/quickstart.py

test: $(VENV)/.test
	$(PY) -m pytest -n 2 --dist loadscope --durations=15

# The fast tier, for the edit-test loop: tests/ without the tests marked slow (pyproject.toml
# says which) and without the doctests of skimpact/; `make test`, which CI runs, runs them all.
test-fast: $(VENV)/.test
	$(PY) -m pytest tests -m "not slow" -n 2 --dist loadscope --durations=10

docs: $(VENV)/.docs
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html
