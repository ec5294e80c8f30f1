# syntax=docker/dockerfile:1
# CNN Lens for a classroom server: CPU-only, runs as a non-root user, needs no
# internet once built (VGG-16 weights and Fashion-MNIST are baked in).
#   docker build -t cnn-lens .
#   docker run --rm -p 8501:8501 --tmpfs /tmp cnn-lens
# Layers go from rarely to often changed, so editing the code never reinstalls
# torch, and editing pages never re-runs the data and weights step.
FROM python:3.11-slim

# MALLOC_ARENA_MAX=2: two glibc heaps, not one per thread (Streamlit runs each session in its own):
# ten students on deep EfficientNet-Lite0 units grew a server by 0.73 GB, not 1.32 GB (docs/HOSTING.md).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OMP_WAIT_POLICY=PASSIVE \
    MALLOC_ARENA_MAX=2 \
    TORCH_HOME=/opt/cnn-lens/torch \
    CNN_LENS_DATA=/opt/cnn-lens/data

# 1. torch + torchvision, CPU builds, in their own layer (see deploy/torch-cpu.txt).
COPY deploy/torch-cpu.txt /tmp/torch-cpu.txt
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu -r /tmp/torch-cpu.txt

# 2. Everything else from requirements.txt; the constraint keeps the CPU torch.
COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir -r /tmp/requirements.txt -c /tmp/torch-cpu.txt

WORKDIR /app

# 3. Fashion-MNIST and the VGG-16 weights, fetched by the same scripts `make data`
#    and `make weights` run (CI runs those outside Docker). The scripts import the
#    library, so app/, models/ and scripts/ come first; the downloads land in a
#    BuildKit cache, so re-running this step after a code change copies rather
#    than downloads. The uncompressed idx copies torchvision leaves are not used.
COPY app/ app/
COPY models/ models/
COPY scripts/ scripts/
RUN --mount=type=cache,target=/var/cache/cnn-lens,sharing=locked \
    TORCH_HOME=/var/cache/cnn-lens/torch CNN_LENS_DATA=/var/cache/cnn-lens/data python -m scripts.prepare_data \
    && TORCH_HOME=/var/cache/cnn-lens/torch python -m scripts.download_weights \
    && mkdir -p /opt/cnn-lens \
    && cp -r /var/cache/cnn-lens/torch /var/cache/cnn-lens/data /opt/cnn-lens/ \
    && find /opt/cnn-lens/data -name '*-ubyte' -delete \
    && python -c "from app.networks.datasets import load_fashion_mnist; load_fashion_mnist('test')"

# 4. The rest of the app: pages, streamlit_app.py, .streamlit/config.toml, assets.
COPY . .

# 5. What no student's image changes (every model's unit tables, the units page's first view,
#    the feature-space maps), computed now so a fresh container's first visitor waits no longer
#    than the hundredth. A teacher's collections are mounted later: docs/HOSTING.md warms them.
RUN python -m scripts.warm_cache

# Code and data stay owned by root and read-only to the app's user.
# A numeric USER lets orchestrators (Kubernetes runAsNonRoot) verify it is not root.
RUN groupadd --gid 10001 lens \
    && useradd --no-log-init --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin lens
USER 10001:10001

EXPOSE 8501
# scripts.serve loads the offered models ($CNN_LENS_OFFER, default all) and runs each once before
# the port opens, so "healthy" means the first student waits no longer than the tenth.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4)"]
CMD ["python", "-m", "scripts.serve", "--server.address=0.0.0.0", "--server.port=8501"]
