"""The deployment files agree with each other and with the app: the numbers and
names that must match across Dockerfile, compose, nginx, Streamlit config and
requirements. (No Docker engine here: this and scripts/docker_lint.sh stand in.)"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from app.networks.images import MAX_BYTES

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = (REPO / "Dockerfile").read_text()
TEMPLATE = (REPO / "deploy" / "nginx" / "cnn-lens.conf.template").read_text()
COMPOSE = (REPO / "docker-compose.yml").read_text()
CONFIG = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())


def pins(path: Path) -> dict[str, str]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return dict(line.split("==") for line in lines if "==" in line)


def test_docker_torch_is_the_cpu_build_of_the_pinned_version() -> None:
    runtime = pins(REPO / "requirements.txt")
    cpu = pins(REPO / "deploy" / "torch-cpu.txt")
    assert cpu == {name: runtime[name] + "+cpu" for name in ("torch", "torchvision")}
    assert "-c /tmp/torch-cpu.txt" in DOCKERFILE


def test_streamlit_config_keeps_protections_and_upload_cap() -> None:
    server, client = CONFIG["server"], CONFIG["client"]
    assert server["enableXsrfProtection"] is True and server["enableCORS"] is True
    assert server["headless"] is True and CONFIG["browser"]["gatherUsageStats"] is False
    # "none" hides tracebacks; the legacy `false` would still show them.
    assert client["showErrorDetails"] == "none"
    assert server["maxUploadSize"] * 2**20 == MAX_BYTES


def test_nginx_body_limit_is_streamlits_upload_limit() -> None:
    """Streamlit accepts maxUploadSize plus 1 MiB of multipart overhead."""
    limit = re.search(r"client_max_body_size (\d+)m;", TEMPLATE).group(1)
    assert int(limit) == CONFIG["server"]["maxUploadSize"] + 1


def test_compose_fills_every_template_placeholder() -> None:
    placeholders = set(re.findall(r"\$\{(CNN_LENS_[A-Z_]+)\}", TEMPLATE))
    assert placeholders == {"CNN_LENS_UPSTREAM_SERVERS", "CNN_LENS_LISTEN", "CNN_LENS_ACCESS_LOG"}
    for name in placeholders:
        assert re.search(rf"^\s+{name}: \S", COMPOSE, re.M), name
    assert "./deploy/nginx/cnn-lens.conf.template:/etc/nginx/templates/default.conf.template:ro" in COMPOSE


def test_dockerfile_port_health_and_user() -> None:
    assert "EXPOSE 8501" in DOCKERFILE
    assert "--server.port=8501" in DOCKERFILE
    assert "http://127.0.0.1:8501/_stcore/health" in DOCKERFILE
    user = re.findall(r"^USER (\S+)", DOCKERFILE, re.M)
    assert user and not user[-1].startswith(("0", "root"))


def test_dockerfile_runs_the_make_scripts_that_exist() -> None:
    modules = re.findall(r"python\"?,? \"?-m\"?,? \"?(scripts\.\w+)", DOCKERFILE)  # in RUN lines and the CMD list
    assert set(modules) == {"scripts.prepare_data", "scripts.download_weights", "scripts.warm_cache", "scripts.serve"}
    makefile = (REPO / "Makefile").read_text()
    for module in modules:
        assert (REPO / (module.replace(".", "/") + ".py")).exists()
        assert f"python -m {module}" in makefile


def test_dockerignore_keeps_what_the_image_needs() -> None:
    patterns = [p for p in (REPO / ".dockerignore").read_text().splitlines() if p and not p.startswith("#")]
    needed = ["streamlit_app.py", "pages/common.py", ".streamlit/config.toml", "models/fashion_cnn.pt"]
    needed += ["requirements.txt", "deploy/torch-cpu.txt", "app/networks/models.py", "scripts/prepare_data.py"]
    for path in needed:
        prefixes = ["/".join(path.split("/")[: i + 1]) for i in range(path.count("/") + 1)]
        hits = [p for p in patterns for q in prefixes if fnmatch.fnmatch(q, p.removeprefix("**/"))]
        assert not hits, f"{path} excluded by {hits}"
    for heavy in (".venv", "data", ".git"):
        assert heavy in patterns


@pytest.mark.slow
def test_download_step_has_every_module_its_scripts_import(tmp_path: Path) -> None:
    """The data/weights step runs before `COPY . .`, with only the folders copied
    above it; importing its scripts from just those folders must work."""
    step = DOCKERFILE.split("WORKDIR /app", 1)[1].split("RUN --mount", 1)[0]
    folders = re.findall(r"^COPY (\w+)/ \1/$", step, re.M)
    assert folders
    for folder in folders:
        shutil.copytree(REPO / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pt"))
    code = "import scripts.prepare_data, scripts.download_weights"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


KUBERNETES = sorted((REPO / "deploy" / "kubernetes").glob("*.yaml"))


def _kubernetes_docs() -> dict[str, dict]:
    import yaml

    return {doc["kind"]: doc for path in KUBERNETES for doc in yaml.safe_load_all(path.read_text())}


def test_kubernetes_manifests_validate_against_the_schemas() -> None:
    """Strict validation (unknown fields fail) against the Kubernetes version the package pins."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    assert {"Deployment", "Service", "Ingress", "HorizontalPodAutoscaler"} <= set(_kubernetes_docs())
    for doc in _kubernetes_docs().values():
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
    broken = _kubernetes_docs()["Deployment"]
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


def test_kubernetes_agrees_with_the_image_and_the_proxy() -> None:
    docs = _kubernetes_docs()
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (app,) = pod["containers"]
    assert app["ports"][0]["containerPort"] == 8501 and "EXPOSE 8501" in DOCKERFILE
    assert pod["securityContext"]["runAsUser"] == 10001 and "USER 10001:10001" in DOCKERFILE
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert app[probe]["httpGet"]["path"] == "/_stcore/health"
    threads = next(e["value"] for e in app["env"] if e["name"] == "OMP_NUM_THREADS")
    assert float(threads) == float(app["resources"]["limits"]["cpu"])
    notes = docs["Ingress"]["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    assert notes["nginx.ingress.kubernetes.io/session-cookie-name"] in TEMPLATE  # same cookie as compose's nginx
    assert int(notes["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    body = notes["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert int(body.rstrip("m")) * 2**20 > MAX_BYTES


def test_every_way_of_running_the_app_caps_glibcs_heaps() -> None:
    """MALLOC_ARENA_MAX=2 (issue 20: a server kept what each session thread's heap had freed)."""
    assert re.search(r"^export MALLOC_ARENA_MAX \?= 2$", (REPO / "Makefile").read_text(), re.M)
    assert re.search(r"^\s+MALLOC_ARENA_MAX=2 \\$", DOCKERFILE, re.M)
    assert 'MALLOC_ARENA_MAX: "2"' in COMPOSE
    deployment = (REPO / "deploy" / "kubernetes" / "deployment.yaml").read_text()
    assert re.search(r"- name: MALLOC_ARENA_MAX\b.*\n\s+value: \"2\"", deployment)
