# Two entry points on a fresh machine (see README): `make demo` and `make test`.
# Both create .venv and install the pinned dependencies first (offline-capable here; see ../shared/TOOLCHAIN.md).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
OUT ?= runs/demo
STAMP := $(VENV)/.installed-$(shell cat settings.ini setup.py | sha1sum | cut -c1-12)

.PHONY: setup demo test test-fast notebooks export-check clean docs

$(STAMP): settings.ini setup.py
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q -e ".[dev]"
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

setup: $(STAMP)

## Runs the six stage notebooks on the embedded default (scikit-learn digits, tiny ViT; CPU; no download).
demo: setup
	$(BIN)/taylormlp run all --out $(OUT)

## Whole test suite: notebook tests (nbdev_test), stage notebooks under papermill, then pytest.
test: setup
	$(BIN)/nbdev_test --flags "" --n_workers 2 --timing
	$(BIN)/python -m pytest -q tests

## Offline docs site in site/ (Sphinx + myst-nb, docs/conf.py; open site/index.html, or python -m http.server -d site).
## Stage pages use executed notebooks from runs/docs or runs/demo when present; `make docs DOCS_FLAGS=--execute` runs
## the stages first. Any Sphinx warning fails the build.
docs: setup
	$(BIN)/python tools/build_docs.py --out site $(DOCS_FLAGS)

## Fails when the exported package is out of sync with the notebooks.
export-check: setup
	$(BIN)/nbdev_export
	@git diff --quiet --exit-code -- taylormlp || (git --no-pager diff --stat -- taylormlp; echo "taylormlp/ differs from what nbdev_export writes: edit the notebooks, run nbdev_export, commit both."; exit 1)
	@test -z "$$(git status --porcelain -- taylormlp)" || (git status --porcelain -- taylormlp; echo "nbdev_export wrote untracked files: commit them."; exit 1)

clean:
	rm -rf $(VENV) runs _proc _docs
