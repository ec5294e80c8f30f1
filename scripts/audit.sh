#!/usr/bin/env bash
# Audit requirements.txt (and everything it pulls in) for known vulnerabilities
# with pip-audit (requirements-dev.txt) against the PyPI vulnerability service.
#   scripts/audit.sh                           # extra arguments go to pip-audit,
#   scripts/audit.sh --ignore-vuln GHSA-xxxx   # e.g. a finding explained in the README
# Exit 1 on any finding. When the service cannot be asked (no network, or a PyPI
# mirror without per-release JSON), pip-audit skips packages yet still prints "No
# known vulnerabilities found"; this script says SKIPPED instead and exits 0, or 1
# with AUDIT_REQUIRE=1 (for a CI that has the real internet).
set -euo pipefail
cd "$(dirname "$0")/.."
PIP_AUDIT="${PIP_AUDIT:-$(command -v .venv/bin/pip-audit || command -v pip-audit || true)}"
if [[ -z "$PIP_AUDIT" ]]; then
    echo "pip-audit not found: run 'make dev' (installs it from requirements-dev.txt)" >&2
    exit 1
fi
report="$(mktemp)"
log="$(mktemp)"
trap 'rm -f "$report" "$log"' EXIT

# pip-audit's own summary would say "No known vulnerabilities found" even when it
# skipped every package, so it is shown only when pip-audit itself fails.
status=0
"$PIP_AUDIT" -r requirements.txt --vulnerability-service pypi --progress-spinner off \
    --format json --output "$report" "$@" 2>"$log" || status=$?
if [[ $status -ne 0 ]]; then cat "$log" >&2; fi

python3 - "$report" "$status" "${AUDIT_REQUIRE:-0}" <<'PY'
import json
import sys

path, status, require = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"


def skipped(why: str) -> None:
    bar = "!" * 78
    print(f"{bar}\nSKIPPED: pip-audit could not check requirements.txt.\n{why}\n{bar}")
    sys.exit(1 if require else 0)


try:
    with open(path) as f:
        report = json.load(f)
except (OSError, ValueError):
    skipped(f"pip-audit exited with {status} and wrote no report (network blocked?).")

deps = report["dependencies"]
audited = [d for d in deps if "skip_reason" not in d]
missed = [d for d in deps if "skip_reason" in d]
if not audited:
    skipped(
        f"The vulnerability service answered for none of the {len(deps)} packages, e.g.:\n"
        f"  {missed[0]['skip_reason'] if missed else 'no packages resolved'}"
    )
found = [(d["name"], d["version"], v) for d in audited for v in d.get("vulns", [])]
for name, version, vuln in found:
    fixed = ", ".join(vuln.get("fix_versions", [])) or "no fix yet"
    print(f"{name} {version}: {vuln['id']} ({', '.join(vuln.get('aliases', []))}) fixed in {fixed}")
    print(f"    {vuln.get('description', '').strip()[:300]}")
if missed:
    print(f"WARNING: not audited ({len(missed)}): " + ", ".join(d["name"] for d in missed))
print(f"pip-audit: {len(audited)} packages audited, {len(found)} known vulnerabilities.")
sys.exit(1 if found or (require and missed) else 0)
PY
