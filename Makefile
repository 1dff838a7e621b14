# Two commands do all set-up on a fresh machine: `make reproduce` and `make test`.
PYTHON  ?= python3
VENV    ?= .venv
PROFILE ?= smoke
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.reslab-setup
# Disk space a fresh virtual environment takes (torch and its CUDA libraries: about 6.4 GiB).
SETUP_GIB ?= 7

.PHONY: setup reproduce check readme test notebooks lab clean-venv

setup: $(STAMP)

# Re-run only when the dependency list changes. torch and torchvision are unpinned on purpose:
# pip takes the release already on the machine's disk instead of downloading one.
$(STAMP): pyproject.toml
	@$(PYTHON) -c "import shutil, sys; free = shutil.disk_usage('.').free / 2**30; \
	sys.exit(0 if free >= $(SETUP_GIB) else 'make setup: the virtual environment needs about $(SETUP_GIB) GiB (torch with its CUDA libraries); ' \
	f'{free:.1f} GiB are free on this disk. Free some space (old virtual environments, /tmp) and run make again.')"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name reslab --display-name "Python (reslab)"
	# JupyterLab in this venv does not autosave: Run All must not rewrite the committed notebooks.
	mkdir -p $(VENV)/share/jupyter/lab/settings
	printf '%s\n' '{"@jupyterlab/docmanager-extension:plugin": {"autosave": false}}' \
	  > $(VENV)/share/jupyter/lab/settings/overrides.json
	touch $(STAMP)

# Every notebook through papermill into results/$(PROFILE)/ (PROFILE=paper for the papers' recipes),
# then the claims summary into results/summary/ and the README's Results section.
reproduce: setup
	$(VENV)/bin/reslab reproduce --profile $(PROFILE) $(if $(DATA),--data-root $(DATA))

# Which committed results were made by code or data that has changed since (exit 1 if any).
check: setup
	$(VENV)/bin/reslab reproduce --check $(if $(DATA),--data-root $(DATA))

# Regenerate the README's Results section from results/summary/.
readme: setup
	$(VENV)/bin/reslab readme

# Unit tests, then nbval over the notebooks (run with smoke defaults, results to a throw-away folder
# that is removed afterwards; the exit code is pytest's).
test: setup
	tmp=$$(mktemp -d) && RESLAB_RESULTS=$$tmp $(PY) -m pytest tests notebooks --nbval-lax -p no:cacheprovider; \
	status=$$?; rm -rf "$$tmp"; exit $$status

# Refresh the committed notebook outputs from a papermill run (never from hand execution).
notebooks: setup
	$(VENV)/bin/reslab notebooks

lab: setup
	$(VENV)/bin/jupyter lab notebooks

clean-venv:
	rm -rf $(VENV)
