# CNN Lens: `make run` starts the app, `make test` runs every check. Both set up what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501

.PHONY: run test venv dev data weights train lint format browser bench clean

$(BIN)/.runtime: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

$(BIN)/.dev: $(BIN)/.runtime requirements-dev.txt
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

venv: $(BIN)/.runtime
dev: $(BIN)/.dev

data: venv
	$(BIN)/python -m scripts.prepare_data

weights: venv
	$(BIN)/python -m scripts.download_weights

train: data
	$(BIN)/python -m models.train_fashion

run: data
	-$(BIN)/python -m scripts.download_weights --optional
	$(BIN)/streamlit run streamlit_app.py --server.port $(PORT)

browser:
	bash scripts/ensure_chromium.sh

lint: dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: dev data browser lint
	$(BIN)/python -m pytest

bench: dev data
	$(BIN)/python -m benchmarks.forward

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
