# gicls: everything a fresh machine needs, in one place.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo

.PHONY: install test demo lint bench bench-startup bench-bleeding bench-cv2024 bench-study clean

install: $(STAMP)

# Re-installs only when the package metadata or the lock changes, so `make test` stays cheap
# to repeat. The lock pins every package (dev tools included) to the versions the tests passed
# with, the optional 'cluster' extra (ray) included so that the Ray tests run; gicls itself is
# then installed without resolving anything again.
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# Two test processes (pytest-xdist), whole files each (module fixtures are built once): most
# tests wait on real subprocesses, folders and clusters, so one process left a core idle and the
# suite over the 20-minute budget on two cores.
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Synthetic data -> trained ten-model bundle -> daemon sorting sample images -> audit
# summary, all inside $(DEMO_DIR)/ (ignored by git).
demo: $(STAMP)
	rm -rf $(DEMO_DIR) && mkdir -p $(DEMO_DIR)
	cp examples/demo-config.toml $(DEMO_DIR)/config.toml
	$(BIN)/gicls-train demo-data $(DEMO_DIR)/training --per-class 60 --size 96 -c $(DEMO_DIR)/config.toml
	$(BIN)/gicls-train all -c $(DEMO_DIR)/config.toml
	examples/demo-daemon.sh $(DEMO_DIR) $(BIN)
	@echo
	@echo "Demo bundle:   $(DEMO_DIR)/Models (manifest.json, plots/, history/, evaluation/)"
	@echo "Balanced sets: $(DEMO_DIR)/Balanced_Data"
	@echo "Sorted images: $(DEMO_DIR)/output, audit log $(DEMO_DIR)/output/audit_log.csv"

# End-to-end speed against the classic per-image loop (see BENCHMARKS.md); about 10 min.
bench: $(STAMP)
	$(BIN)/python bench/e2e.py

# Time to READY=1: fresh state against 1,000,000 audit rows and a journal of 500,000 files,
# with a cProfile of the state reading (BENCHMARKS.md, "Start-up time"); about 10 min.
bench-startup: $(STAMP)
	$(BIN)/python -m bench.startup --rows 1000000 --journal-files 500000 --profile

# A 50,000-frame 336 px synthetic study, as a video and as a folder of frames, through
# gicls-daemon run --once: frames/s vs the bare fused ensemble, peak RSS at 5,000 and 50,000
# frames, report time, gicls-audit summary/verify on the folder's log (bench/README.md).
# Long on two cores; `STUDY_FRAMES=2000` checks that it works.
STUDY_FRAMES ?= 50000
bench-study: $(STAMP)
	$(BIN)/python -m bench.study --frames $(STUDY_FRAMES)

RECIPE ?= seed_cnn
SEEDS ?= 42 7
# Real-image Bleeding benchmark (needs ../shared/data beside the clone): trains through
# gicls-train all on WCEBleedGen, about 15-40 min per split seed on two cores.
bench-bleeding: $(STAMP)
	$(BIN)/python -m bench.bleeding --recipe $(RECIPE) $(foreach s,$(SEEDS),--seed $(s))

CV_RECIPE ?= default
# Ten-class benchmark on the real Capsule Vision 2024 frames (needs ../shared/data): trains
# through gicls-train all on training/, evaluates on validation/ (per class, per source, source
# probe, submission file) and leaves SEE-AI and KVASIR out in turn; see bench/README.md.
bench-cv2024: $(STAMP)
	$(BIN)/python -m bench.cv2024 --recipe $(CV_RECIPE)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
