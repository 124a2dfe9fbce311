#!/usr/bin/env bash
# Install what splitinfer needs, idempotently.
#   scripts/setup.sh runtime   .venv with the edge, cloud and sidecar extras (no torch)
#   scripts/setup.sh dev       the same plus training (torch CPU build), test extras and chromium
# System packages (libusb for open3d; chromium for one sidecar test) come from apt-get where it
# exists and may be used (root, or sudo without a password); elsewhere (macOS, Fedora, no root)
# they are skipped with a note saying what to install by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-runtime}
case "$profile" in runtime|dev) ;; *) echo "usage: scripts/setup.sh [runtime|dev]" >&2; exit 2 ;; esac

apt_install() {  # apt_install PACKAGE WHY: install with apt-get, or say why not and go on
  local pkg=$1 why=$2 sudo=""
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "note: no apt-get here; install $pkg with your package manager ($why)" >&2; return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"
    else echo "note: not root and no password-less sudo; skipped $pkg ($why)" >&2; return 0; fi
  fi
  { $sudo apt-get update -qq && $sudo apt-get install -y -qq "$pkg" >/dev/null; } \
    || echo "warning: could not install $pkg ($why)" >&2
}

if ! { ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so'; } && [ "$(uname)" = Linux ]; then
  apt_install libusb-1.0-0 "open3d (the viz extra) needs it"
fi
if [ "$profile" = dev ] && ! command -v chromium >/dev/null 2>&1; then
  apt_install chromium "the sidecar web-page test drives it; without it that test skips"
fi
if [ "$profile" = dev ] && ! command -v haproxy >/dev/null 2>&1 && [ ! -x /usr/sbin/haproxy ]; then
  apt_install haproxy "the replica tests run it in front of loopback servers; without it they skip"
fi

PY=${PYTHON:-python3}
command -v "$PY" >/dev/null 2>&1 || { echo "error: $PY not found; install Python >= 3.10 (or set PYTHON=...)" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
  if ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; then
    echo "error: $PY cannot create virtual environments (the venv/ensurepip modules are missing)." >&2
    echo "  fix: install them, e.g. 'apt-get install python3-venv' (Debian/Ubuntu) or 'dnf install python3'" >&2
    exit 1
  fi
  "$PY" -m venv .venv
fi
stamp=".venv/.installed-$profile-$(sha256sum pyproject.toml 2>/dev/null | cut -c1-12 || shasum -a 256 pyproject.toml | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  case "$profile" in
    runtime) .venv/bin/python -m pip install -q -e ".[edge,viz,cloud,sidecar]" ;;
    dev)     .venv/bin/python -m pip install -q -e ".[edge,viz,cloud,sidecar,train,motion,test,profile]" ;;
  esac
  touch "$stamp"
fi
