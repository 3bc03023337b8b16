# The two commands of the README's quick start:
#   make run    create .venv if needed, run the default workflow, print where the results are
#   make test   create .venv if needed, run the test suite (what CI runs)

PYTHON ?= python3
VENV ?= .venv
INSTALLED := $(VENV)/.installed

.PHONY: run test lint clean-results

run: $(INSTALLED)
	$(VENV)/bin/snakemake
	@echo
	@echo "AUROC of curvature for finding the corrupted labels (results/auroc.csv):"
	@cat results/auroc.csv
	@echo "Per-run tables and figures: results/<dataset>/noise<rate>/seed<seed>/ (curvature.csv, metrics.json, figures/)"

test: $(INSTALLED)
	$(VENV)/bin/python -m pytest

lint: $(INSTALLED)
	$(VENV)/bin/snakemake --lint

# Reinstall when the declared dependencies change.
$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	touch $@

clean-results:
	rm -rf results/*/ results/auroc.csv logs benchmarks .snakemake
