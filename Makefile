# The README's commands. Each one creates or refreshes the virtual environment first.
#   make repro   regenerate results/ and reports/ (quick profile; PROFILE=paper for the paper's)
#   make test    unit tests, notebook (nbval) tests and an end-to-end tiny `dvc repro`
#   make lab     JupyterLab with the project's kernel
#   make smoke   the paper profile's shape at tiny budgets (every model, every stage) in a copy of this tree
#   make queue   run the queued experiments (dvc exp run --queue ...) on WORKERS parallel workers

PYTHON ?= python3
VENV ?= .venv
PROFILE ?=
SMOKE_DIR ?= $(abspath ../edgeprune-smoke)
WORKERS ?= 2
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
export PATH := $(BIN):$(PATH)

.PHONY: setup data repro test lab bench smoke queue clean-venv

$(STAMP): pyproject.toml constraints.txt
	rm -f $(VENV)/.installed-*
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	-$(BIN)/nbstripout --install --attributes .gitattributes
	touch $@

setup: $(STAMP)

data: setup
	$(BIN)/dvc pull --quiet data.dvc

repro: data
	$(BIN)/python -m edgeprune.config $(if $(PROFILE),--use $(PROFILE),) params.yaml
	$(BIN)/python -m edgeprune.preflight params.yaml
	$(if $(filter paper,$(PROFILE)),$(BIN)/python -m edgeprune.bench plan --params params.yaml,)
	$(BIN)/dvc repro

test: data
	$(BIN)/python -m pytest -n 2

lab: setup
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,lab]"
	$(BIN)/python -m ipykernel install --sys-prefix --name edgeprune --display-name "edgeprune (.venv)"
	$(BIN)/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root,)

# A copy of this working tree (committed and uncommitted files) with the smoke profile as params.yaml:
# `dvc repro` stage by stage there, each stage's wall time printed. This tree's results/ are untouched
# (the copy shares this tree's DVC cache, where the data already is).
smoke: data
	$(BIN)/python -m edgeprune.smoke
	rm -rf $(SMOKE_DIR) && git clone --quiet . $(SMOKE_DIR)
	git ls-files -co --exclude-standard -z | tar --null --ignore-failed-read -T - -cf - | tar -xf - -C $(SMOKE_DIR)
	cd $(SMOKE_DIR) && $(BIN)/dvc cache dir --local $(abspath .dvc/cache) && $(BIN)/dvc checkout --quiet data.dvc
	cp lib/edgeprune/profiles/smoke.yaml $(SMOKE_DIR)/params.yaml
	cd $(SMOKE_DIR) && $(BIN)/python -m edgeprune.bench repro

# Each worker's torch threads: num_threads 0 means cores / WORKERS (edgeprune.train.default_threads).
queue: data
	EDGEPRUNE_WORKERS=$(WORKERS) $(BIN)/dvc queue start -j $(WORKERS)
	$(BIN)/dvc queue status

bench: setup
	$(BIN)/python -m edgeprune.bench train

clean-venv:
	rm -rf $(VENV)
