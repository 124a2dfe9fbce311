"""``splitinfer models pull``: fetch the edge half of a served model (config, encoder ONNX, CDF
tables) over the server's gRPC endpoint (same TLS and token as ``stream``), verify it, and write
a local model folder ``OUT/<name>/<version>/`` that ``splitinfer stream --models OUT`` uses.

    splitinfer models pull --server HOST:PORT micro-p1024-l16000 --out edge-models
    splitinfer models pull --server HOST:PORT micro-p1024-l16000@1 --tls-ca ca.pem --token-file t

Verified before anything is written: every file's sha256 against the one the server announced
and, for the encoder and tables, against the sha256 recorded in the config; the model digest
computed from the received config against the server's. Files are written to a temporary folder
that is renamed into place, so a failed pull leaves nothing half-written.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from .options import add_connection_arguments, token_from_args


class PullError(RuntimeError):
    pass


def parse_ref(ref: str) -> tuple[str, int]:
    """"NAME" or "NAME@VERSION" -> (name, version; 0 for the served one)."""
    name, _, version = ref.partition("@")
    if not name:
        raise PullError(f"no model name in {ref!r}")
    try:
        return name, int(version) if version else 0
    except ValueError:
        raise PullError(f"bad version in {ref!r}: expected NAME@INTEGER") from None


def receive(chunks) -> tuple[dict, dict[str, bytes]]:
    """(model info {name, version, digest}, {file: bytes}) from a PullModel stream, each file's
    size and sha256 checked."""
    info: dict = {}
    files: dict[str, bytearray] = {}
    expected: dict[str, tuple[int, str]] = {}
    current = None
    for c in chunks:
        if c.model:
            info = {"name": c.model, "version": c.version, "digest": c.digest}
        if c.file:
            name = c.file
            if "/" in name or "\\" in name or name in ("", ".", ".."):
                raise PullError(f"the server sent a file name outside the model folder: {name!r}")
            current = name
            files[current] = bytearray()
            expected[current] = (c.size, c.sha256)
        if current is None:
            raise PullError("the server sent data before a file name")
        if c.offset != len(files[current]):
            raise PullError(f"{current}: chunk at offset {c.offset}, expected {len(files[current])}")
        files[current] += c.data
        if len(files[current]) > expected[current][0]:
            raise PullError(f"{current}: more bytes than the announced {expected[current][0]}")
    if not info or "config.json" not in files:
        raise PullError("the server sent no model")
    for name, data in files.items():
        size, digest = expected[name]
        if len(data) != size:
            raise PullError(f"{name}: received {len(data)} of {size} bytes")
        if hashlib.sha256(data).hexdigest() != digest:
            raise PullError(f"{name}: sha256 mismatch (the transfer was corrupted)")
    return info, {k: bytes(v) for k, v in files.items()}


def verify(info: dict, files: dict[str, bytes]) -> dict:
    """The config, checked: files against its recorded sha256, its digest against the server's."""
    from splitinfer.repository import ModelConfig
    raw = json.loads(files["config.json"])
    recorded = raw.get("sha256", {})
    for role in ("encoder", "tables"):
        fname = raw.get("files", {}).get(role)
        if fname is None:
            continue
        if fname not in files:
            raise PullError(f"the server sent no {role} ({fname})")
        if fname in recorded and hashlib.sha256(files[fname]).hexdigest() != recorded[fname]:
            raise PullError(f"{fname}: does not match the sha256 recorded in the model's config")
    cfg = ModelConfig(raw["name"], int(raw["version"]), raw["task"], Path("."), raw)
    if cfg.digest != info["digest"]:
        raise PullError(f"model digest {cfg.digest} of the received config is not the served "
                        f"{info['digest']}")
    if (raw["name"], int(raw["version"])) != (info["name"], int(info["version"])):
        raise PullError(f"the server sent {raw['name']}@{raw['version']} for {info['name']}@{info['version']}")
    return raw


def pull_model(client, ref: str, out: str | Path, timeout_s: float = 120.0) -> Path:
    """Pull ``ref`` (NAME[@VERSION]) with an ``EdgeClient``'s channel into ``out``; returns the
    model folder. Raises PullError (or ClassifyError for a gRPC status)."""
    import grpc

    from splitinfer.proto.v2 import inference_pb2 as pb2

    from .errors import ClassifyError
    name, version = parse_ref(ref)
    try:
        chunks = client._stub.PullModel(pb2.PullModelRequest(model=name, version=version),
                                        metadata=client._metadata, timeout=timeout_s)
        info, files = receive(chunks)
    except grpc.RpcError as e:
        raise ClassifyError(e.code(), e.details()) from None
    raw = verify(info, files)
    dest = Path(out) / raw["name"] / str(raw["version"])
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".pull-", dir=dest.parent))
    tmp.chmod(0o755)
    try:
        for fname, data in files.items():
            (tmp / fname).write_bytes(data)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _run(a: argparse.Namespace) -> int:
    from splitinfer.tokens import TokenFileError

    from .client import ClassifyError, EdgeClient
    try:
        token = token_from_args(a)
        with EdgeClient(a.server, token=token, tls=a.tls, tls_ca=a.tls_ca,
                        tls_server_name=a.tls_server_name) as client:
            dest = pull_model(client, a.model, a.out, a.timeout)
    except (PullError, ClassifyError, TokenFileError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"pulled {a.model} into {dest} (verified: file sha256s and model digest); "
          f"stream with: splitinfer stream --models {a.out} --model {dest.parent.name} ...")
    return 0


def add_parser(models_sub) -> None:
    m = models_sub.add_parser("pull", help="fetch a served model's edge half from a server",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    m.add_argument("model", metavar="NAME[@VERSION]")
    m.add_argument("--out", default="models", help="model repository to write into (default models/)")
    add_connection_arguments(m)
    m.add_argument("--timeout", type=float, default=120.0, help="seconds for the whole transfer")
    m.set_defaults(func=_run)
