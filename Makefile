# CNN Lens: `make run` starts the app, `make test` runs every check. Both set up what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501
# OpenMP threads that spin while waiting steal the other core from everyone else on a
# busy 2-core server (measured: t-SNE 41 s -> 7 s, features 7.3 s -> 2.1 s under load).
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: run test venv dev data weights warm train lint format system-deps audit bench clean

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

warm: data
	$(BIN)/python -m scripts.warm_cache

train: data
	$(BIN)/python -m models.train_fashion

run: warm
	-$(BIN)/python -m scripts.download_weights --optional
	$(BIN)/streamlit run streamlit_app.py --server.port $(PORT)

system-deps:
	bash scripts/ensure_system_deps.sh

lint: dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/docker_lint.sh
	$(BIN)/kubernetes-validate --strict --quiet deploy/kubernetes/*.yaml

audit: dev
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/audit.sh

format: dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: dev data system-deps lint
	CNN_LENS_REQUIRE_NGINX=1 $(BIN)/python -m pytest
	-PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/audit.sh

bench: dev data
	$(BIN)/python -m benchmarks.forward

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
