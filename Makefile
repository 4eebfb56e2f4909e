# The two set-up commands of the README: `make quickstart` and `make test`.
# Each creates .venv with Python >= 3.12 and installs skimpact with its extras from pyproject.toml.
VENV := .venv
PY := $(VENV)/bin/python
export JAX_PLATFORMS ?= cpu

$(VENV)/.installed: pyproject.toml
	rm -rf $(VENV)
	"$$(bash .ci/python)" -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,docs]"
	touch $@

.PHONY: quickstart test docs
quickstart: $(VENV)/.installed
	$(PY) examples/quickstart.py

test: $(VENV)/.installed
	$(PY) -m pytest -n 2 --dist loadscope --durations=15

docs: $(VENV)/.installed
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html
