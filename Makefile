# The README's two commands are `make lab` and `make test`; each does all of its own set-up.
VENV      := .venv
BIN       := $(VENV)/bin
STAMP     := $(VENV)/.installed
PYTHON    ?= python3
LAB_HOST  := 127.0.0.1
LAB_PORT  ?= 8888
PYTEST_ARGS ?=

.PHONY: lab test bench soak cost engine browser images venv lint clean-labs

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[lab,test]'
	touch $(STAMP)

venv: $(STAMP)

engine:
	@sh scripts/ensure-engine.sh

browser:
	@sh scripts/ensure-browser.sh

images: venv engine
	$(BIN)/labkit images build

lab: images
	@echo "Starting JupyterLab on http://$(LAB_HOST):$(LAB_PORT)/ (the URL with its token follows)"
	cd notebooks && ../$(BIN)/jupyter lab --ip=$(LAB_HOST) --port=$(LAB_PORT) --no-browser \
	    --allow-root 01-default-socket.ipynb

test: images browser
	$(BIN)/ruff check labkit tests bench
	$(BIN)/ruff format --check labkit tests bench
	start=$$(date +%s) && \
	LABKIT_TEST_RUN=$$start $(BIN)/pytest -n auto --dist loadfile \
	    --nbval notebooks tests --nbval-sanitize-with notebooks/sanitize.cfg $(PYTEST_ARGS) && \
	LABKIT_TEST_RUN=$$start $(BIN)/pytest -m leakcheck tests/test_leaks.py

bench: images
	$(BIN)/python bench/bench_lab.py

soak: images
	$(BIN)/python bench/soak.py

cost: images
	$(BIN)/python bench/lab_cost.py

lint: venv
	$(BIN)/ruff check labkit tests bench
	$(BIN)/ruff format labkit tests bench

clean-labs: venv engine
	$(BIN)/labkit down --all
