# CNN Lens: `make run` starts the app, `make test` runs every check. Both set up what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501
# OpenMP threads that spin while waiting steal the other core from everyone else on a
# busy 2-core server (measured: t-SNE 41 s -> 7 s, features 7.3 s -> 2.1 s under load).
export OMP_WAIT_POLICY ?= PASSIVE
# glibc gives every thread that allocates its own heap (up to 8 per core) and keeps what it frees;
# Streamlit runs each session in its own thread. Ten students on deep EfficientNet-Lite0 units
# grew a server by 1.32 GB with the default, 0.73 GB with two heaps (issue 20, docs/HOSTING.md).
export MALLOC_ARENA_MAX ?= 2
# TORCH=cpu installs PyTorch's CPU-only torch/torchvision (deploy/torch-cpu.txt, from
# PyTorch's own CPU wheel index) instead of PyPI's default Linux build, which bundles CUDA:
# the development .venv measured 6.6 GB, 3.2 GB of it NVIDIA libraries no CPU machine uses.
# Needs that index to be reachable; the default needs only PyPI. Each choice keeps its own
# stamp, so `make run TORCH=cpu` on an existing .venv swaps torch (`make clean` first to
# also drop the NVIDIA libraries already installed).
TORCH ?= default
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
RUNTIME := $(BIN)/.runtime-$(TORCH)
ifeq ($(TORCH),cpu)
PIP_TORCH := -c deploy/torch-cpu.txt
else ifneq ($(TORCH),default)
$(error TORCH must be "default" (PyPI, with CUDA on Linux) or "cpu", not "$(TORCH)")
endif

.PHONY: run test venv dev data weights warm train lint format system-deps audit bench clean

$(RUNTIME): requirements.txt deploy/torch-cpu.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
ifeq ($(TORCH),cpu)
	$(BIN)/pip install -q --disable-pip-version-check --index-url $(TORCH_CPU_INDEX) -r deploy/torch-cpu.txt
endif
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt $(PIP_TORCH)
	rm -f $(BIN)/.runtime-* $(BIN)/.dev
	touch $@

$(BIN)/.dev: $(RUNTIME) requirements-dev.txt
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt $(PIP_TORCH)
	touch $@

venv: $(RUNTIME)
dev: $(BIN)/.dev

data: venv
	$(BIN)/python -m scripts.prepare_data

weights: venv
	$(BIN)/python -m scripts.download_weights

# WARM="--models efficientnet_lite0 --only units,maps --all-perplexities" picks what to warm (scripts/warm_cache.py)
WARM ?=
warm: data
	$(BIN)/python -m scripts.warm_cache $(WARM)

train: data
	$(BIN)/python -m models.train_fashion

run: warm
	-$(BIN)/python -m scripts.download_weights --optional
	$(BIN)/python -m scripts.serve --server.port $(PORT)

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
