#!/usr/bin/env bash
# Install what splitinfer needs on a fresh Debian/Ubuntu machine, idempotently.
#   scripts/setup.sh runtime   system libs + .venv with the edge, cloud and sidecar extras (no torch)
#   scripts/setup.sh dev       the same plus training (torch CPU build), test extras and chromium
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-runtime}

need_apt=()
ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so' || need_apt+=(libusb-1.0-0)   # open3d
# dev: headless Chromium for the sidecar's web-page test (driven by Playwright)
[ "$profile" = dev ] && ! command -v chromium >/dev/null && need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=".venv/.installed-$profile-$(cat pyproject.toml | sha256sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  case "$profile" in
    runtime) .venv/bin/python -m pip install -q -e ".[edge,cloud,sidecar]" ;;
    dev)     .venv/bin/python -m pip install -q -e ".[edge,cloud,sidecar,train,motion,test]" ;;
    *) echo "unknown profile $profile" >&2; exit 2 ;;
  esac
  touch "$stamp"
fi
