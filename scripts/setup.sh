#!/usr/bin/env bash
# Install what splitinfer needs on a fresh Debian/Ubuntu machine, idempotently.
#   scripts/setup.sh runtime   system libs + .venv with the edge, cloud and sidecar extras (no torch)
#   scripts/setup.sh dev       the same plus training (torch CPU build), test extras and chromium
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-runtime}

SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so'; then   # open3d needs it
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq libusb-1.0-0 >/dev/null
fi
# dev: headless Chromium for the sidecar's web-page test (Playwright drives it); without it
# that one test skips, so a failed install only warns
if [ "$profile" = dev ] && ! command -v chromium >/dev/null; then
  { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null; } \
    || echo "warning: could not install chromium; the sidecar page test will skip" >&2
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
