#!/usr/bin/env bash
# System packages the tests drive for real: Debian's Chromium (via Playwright, never
# `playwright install`) and nginx (the scale-out config test). Installed only if missing.
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium chromium-driver)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "Missing system packages for the tests: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
