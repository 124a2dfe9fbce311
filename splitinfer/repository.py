"""The model repository: ``models/<name>/<version>/config.json`` plus its artifacts (Triton layout).

Every model version is immutable and identified by its digest (``ModelConfig.digest``), recorded
in its config as ``"digest"``. Loading checks what the config claims: the files it names lie
inside the version folder, each matches its recorded sha256, the recorded digest is the one the
config implies. A model that fails any check is refused with an error naming the file and the
fix, and only that model: ``ModelRepository.list`` skips broken configs and records them in
``errors`` (``broken()`` for health and readiness answers).

Models are addressed as ``NAME`` (the newest version) or ``NAME@VERSION``.

Torch-free: configs are JSON, models are ONNX graphs and CDF tables.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

DEFAULT_ROOT = Path(__file__).resolve().parents[1] / "models"
#: The files an edge needs to encode (``splitinfer models pull`` fetches these).
EDGE_ROLES = ("encoder", "tables")
#: Keys of an ``"adaptive"`` config section that change how a bitstream decodes.
_ADAPTIVE_CODING_KEYS = ("bins", "centres", "q_channels", "q_length", "log2_grid", "escape_mass",
                         "precision")
DIGEST_FIX = "run `splitinfer models digest --write` after a deliberate change to the config"


from .codec.container import UnknownModel, short_digest  # noqa: E402  (one error type for "no such model")
from .errors import ModelError  # noqa: E402,F401  (raised here; re-exported)
from .registry import runtime_for, tasks  # noqa: E402


@dataclass(frozen=True)
class ModelConfig:
    name: str
    version: int
    task: str
    path: Path
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def id(self) -> str:
        return self.name

    @property
    def ref(self) -> str:
        """``NAME@VERSION``: this exact version."""
        return f"{self.name}@{self.version}"

    def file(self, role: str) -> Path:
        return self.path / self.raw["files"][role]

    def __getattr__(self, key: str) -> Any:  # size, points, lmbda, channels, classes, metrics...
        try:
            return self.raw[key]
        except KeyError:
            raise AttributeError(key) from None

    @functools.cached_property
    def digest(self) -> str:
        """The model's identity: sha256 (64 hex digits) over the recorded sha256 of every artifact
        file, its classes, input size, preprocessing and (image codecs) the adaptive coding
        parameters. Computed from the config alone, so an edge that holds only the encoder half
        has it too; ``ModelRepository.verify`` checks the files against the recorded sha256
        values. Edge and server compare digests per stream; containers carry its first 8 bytes."""
        manifest = {"task": self.task, "files": dict(sorted(self.raw.get("sha256", {}).items())),
                    "classes": self.raw.get("classes"), "points": self.raw.get("points"),
                    "preprocess": self.raw.get("preprocess")}
        adaptive = self.raw.get("adaptive")
        if isinstance(adaptive, dict):
            manifest["adaptive"] = {k: adaptive[k] for k in _ADAPTIVE_CODING_KEYS if k in adaptive}
        return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()

    @property
    def short_digest(self) -> str:
        """The digest's first 16 hex digits: what a container carries."""
        return short_digest(self.digest)

    def summary(self) -> dict[str, Any]:
        m = self.raw.get("metrics", {})
        return {"name": self.name, "version": self.version, "task": self.task,
                "digest": self.short_digest,
                "size": self.raw.get("size"), "points": self.raw.get("points"),
                "lambda": self.raw.get("lmbda"), "channels": self.raw.get("channels"),
                "test_accuracy": m.get("test_accuracy"), "bits_mean": m.get("bits_mean")}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def default_root() -> Path:
    return Path(os.environ.get("SPLITINFER_MODELS", DEFAULT_ROOT))


def parse_ref(ref: str, version: int | None = None) -> tuple[str, int | None]:
    """``NAME`` or ``NAME@VERSION`` -> (name, version or None); an explicit ``version`` wins."""
    name, at, v = str(ref).rpartition("@")
    if not at:
        return str(ref), version
    if not v.isdigit():
        raise UnknownModel(f"model reference {str(ref)[:100]!r}: the version after '@' must be "
                           "a positive integer")
    return name, version if version is not None else int(v)


def _inside(folder: Path, rel: Any, what: str, cfg_path: Path) -> str:
    """``rel`` as a plain relative path inside ``folder``, or ModelError."""
    p = PurePosixPath(str(rel)) if isinstance(rel, str) else None
    if (p is None or not str(rel) or p.is_absolute() or ".." in p.parts or "\\" in str(rel)
            or not (folder / p).resolve().is_relative_to(folder.resolve())):
        raise ModelError(cfg_path, f"{what} {str(rel)[:200]!r} is not a file inside the model "
                                   f"folder {folder}; a config may only name files in its own "
                                   "folder: fix the path or restore the config")
    return rel


def read_config(cfg_path: Path, check_digest: bool = True) -> ModelConfig:
    """Parse and check one config.json (no file hashing); raises ModelError."""
    cfg_path = Path(cfg_path)
    try:
        raw = json.loads(cfg_path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ModelError(cfg_path, f"cannot read it ({e.strerror or e}); restore the file or "
                                   "remove the model's folder") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(cfg_path, f"not valid JSON ({e}); the file is truncated or edited by "
                                   "hand: restore it or remove the model's folder") from None
    if not isinstance(raw, dict):
        raise ModelError(cfg_path, "not a JSON object; restore the file or remove the model's folder")
    missing = [k for k in ("name", "version", "task", "files") if k not in raw]
    if missing:
        raise ModelError(cfg_path, f"missing keys {missing}; restore the file or remove the "
                                   "model's folder")
    folder = cfg_path.parent
    try:
        version = int(raw["version"])
    except (TypeError, ValueError):
        raise ModelError(cfg_path, f"version {raw['version']!r} is not an integer") from None
    if raw["name"] != folder.parent.name or str(version) != folder.name:
        raise ModelError(cfg_path, f"names model {raw['name']!r} version {raw['version']!r} but "
                                   f"lies in {folder.parent.name}/{folder.name}: a model lives in "
                                   "<name>/<version>/; move the folder or fix the config")
    files, sums = raw["files"], raw.get("sha256", {})
    if not isinstance(files, dict) or not isinstance(sums, dict):
        raise ModelError(cfg_path, "'files' and 'sha256' must be JSON objects")
    for role, rel in files.items():
        rel = _inside(folder, rel, f"file {role!r}", cfg_path)
        if rel not in sums:
            raise ModelError(cfg_path, f"no sha256 recorded for {rel!r} (role {role!r}); "
                                       "re-export the model into a new version")
    for rel in sums:
        _inside(folder, rel, "sha256 entry", cfg_path)
    cfg = ModelConfig(str(raw["name"]), version, str(raw["task"]), folder, raw)
    recorded = raw.get("digest")
    if check_digest and recorded is not None and recorded != cfg.digest:
        raise ModelError(cfg_path, f"recorded digest {short_digest(str(recorded))} is not the "
                                   f"digest {cfg.short_digest} its files and classes give: the "
                                   f"config was changed after export; restore it, or {DIGEST_FIX}")
    return cfg


def verify_files(cfg: ModelConfig, roles: Iterable[str] | None = None) -> None:
    """Check the model's files (those of ``roles``, default all) against their recorded sha256;
    raises ModelError for a missing or altered file."""
    files = cfg.raw["files"]
    for role in (files if roles is None else [r for r in roles if r in files]):
        rel = files[role]
        path = cfg.path / rel
        try:
            actual = sha256(path)
        except OSError as e:
            raise ModelError(path, f"model file missing or unreadable ({e.strerror or e}); "
                                   f"restore {cfg.ref}'s files, or pull the model again") from None
        if actual != cfg.raw["sha256"][rel]:
            raise ModelError(path, f"sha256 {actual[:16]} differs from the {cfg.raw['sha256'][rel][:16]} "
                                   f"recorded in config.json: the file was altered after export; "
                                   f"restore {cfg.ref}'s files, or export the changed model as a "
                                   "new version")


def write_digest(cfg_path: Path) -> tuple[str, bool]:
    """Record the digest in a config.json (after ``"version"``) once the config checks out and
    its files match their sha256; returns (digest, changed). Only the ``"digest"`` key is
    written; raises ModelError otherwise."""
    cfg = read_config(cfg_path, check_digest=False)
    verify_files(cfg)
    if cfg.raw.get("digest") == cfg.digest:
        return cfg.digest, False
    out: dict[str, Any] = {}
    for k, v in cfg.raw.items():
        if k != "digest":
            out[k] = v
        if k == "version":
            out["digest"] = cfg.digest
    tmp = Path(cfg_path).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, cfg_path)
    return cfg.digest, True


def load_tables(cfg: ModelConfig, role: str = "tables"):
    """The model's CdfTables of ``role``; ModelError naming the file when it is not one."""
    from .codec.tables import CdfTables
    path = cfg.file(role)
    try:
        return CdfTables.load(path)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ModelError(path, f"not a CdfTables .npz file ({type(e).__name__}: {e}); tables are "
                               "an .npz written by CdfTables.save (pickled data is refused): "
                               f"restore {cfg.ref}'s files or export the model again") from None


def new_version_folder(models: str | Path, name: str, version: int | None = None) -> Path:
    """The folder an export writes: ``models/name/version`` (default: one past the newest).
    Versions are immutable: an existing version folder is refused (FileExistsError)."""
    base = Path(models) / name
    if version is None:
        taken = [int(p.name) for p in base.glob("*") if p.is_dir() and p.name.isdigit()]
        version = max(taken, default=0) + 1
    if int(version) < 1:
        raise ValueError(f"version must be >= 1, got {version}")
    out = base / str(int(version))
    if out.exists():
        raise FileExistsError(f"{out} exists: model versions are immutable; export the retrained "
                              f"model as a new version (--version {int(version) + 1}, or leave "
                              "--version out for the next free one)")
    out.mkdir(parents=True)
    return out


class ModelRepository:
    """Finds model configs and loads (and caches) their runtimes.

    ``errors`` lists ``(config path, message)`` for every model the last ``list()`` or ``load()``
    found broken (they are skipped; the others serve).
    """

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root else default_root()
        self.errors: list[tuple[str, str]] = []
        self._config_errors: list[tuple[str, str]] = []
        self._load_errors: dict[str, tuple[str, str]] = {}
        self._loaded: dict[tuple[str, int], Any] = {}
        self._verified: dict[tuple[str, int], set[str]] = {}
        self._lock = threading.Lock()

    def list(self, task: str | None = None) -> list[ModelConfig]:
        """Every readable model version (of ``task``), in name then version order; broken ones
        are left out and recorded in ``errors``."""
        configs, errors = [], []
        for cfg_path in sorted(self.root.glob("*/*/config.json")):
            try:
                cfg = read_config(cfg_path)
            except ModelError as e:
                errors.append((e.path, e.reason))
                continue
            if task is None or cfg.task == task:
                configs.append(cfg)
        self._config_errors = errors
        self.errors = errors + [e for e in self._load_errors.values() if e not in errors]
        return sorted(configs, key=lambda c: (c.name, c.version))

    def broken(self) -> list[dict[str, str]]:
        """The broken models, for health and readiness answers: ``[{"path", "error"}]``."""
        self.list()
        return [{"path": p, "error": m} for p, m in self.errors]

    def names(self) -> list[str]:
        return sorted({c.name for c in self.list()})

    def _broken_for(self, name: str, version: int | None) -> tuple[str, str, int] | None:
        """(path, message, version) of a version of ``name`` (any version when None) whose config
        is broken (a load failure is retried by the next load)."""
        for path, message in self._config_errors:
            p = Path(path)
            parts = p.relative_to(self.root).parts if p.is_relative_to(self.root) else ()
            if len(parts) >= 2 and parts[0] == name and parts[1].isdigit() and (
                    version is None or int(parts[1]) == version):
                return path, message, int(parts[1])
        return None

    def config(self, name: str, version: int | None = None) -> ModelConfig:
        """The model's config: ``name`` is ``NAME`` (newest version unless ``version`` is given)
        or ``NAME@VERSION``. UnknownModel when there is none; ModelError when the one asked for
        is broken."""
        name, version = parse_ref(name, version)
        configs = self.list()
        candidates = [c for c in configs if c.name == name and (version is None or c.version == version)]
        broken = self._broken_for(name, version)
        if broken and (not candidates or version is not None
                       or broken[2] > max(c.version for c in candidates)):
            raise ModelError(*broken[:2])
        if not candidates:
            known = ", ".join(sorted({c.name for c in configs})) or "none"
            raise UnknownModel(f"unknown model {name[:200]!r}"
                               + (f" version {version}" if version else "") + f" (known: {known})")
        return max(candidates, key=lambda c: c.version)

    def by_digest(self, digest: str, task: str | None = None) -> list[ModelConfig]:
        """The model versions (of ``task``) whose digest starts with ``digest`` (hex): the same
        files may be shipped under several names."""
        prefix = str(digest).lower()
        return [c for c in self.list(task) if c.digest.startswith(prefix)]

    def verify(self, cfg: ModelConfig, roles: Iterable[str] | None = None) -> None:
        """Check the artifacts (of ``roles``, default all) against the checksums in its config."""
        verify_files(cfg, roles)

    def select(self, refs: Iterable[str] = (), tasks: Iterable[str] | None = None) -> list[ModelConfig]:
        """The versions to serve: every version of each ``NAME`` (one for ``NAME@VERSION``), or of
        every model of ``tasks`` when no refs are given. A broken model asked for by name raises
        ModelError; without refs broken ones are skipped (recorded in ``errors``)."""
        refs = list(dict.fromkeys(refs))
        if not refs:
            tasks = set(tasks) if tasks is not None else None
            return [c for c in self.list() if tasks is None or c.task in tasks]
        out = []
        for ref in refs:
            name, version = parse_ref(ref)
            if version is not None:
                out.append(self.config(name, version))
                continue
            newest = self.config(name)  # UnknownModel / ModelError for the newest
            older = [c for c in self.list() if c.name == name and c.version < newest.version]
            broken = self._broken_for(name, None)
            if broken:
                raise ModelError(*broken[:2])
            out += older + [newest]
        return list({c.ref: c for c in out}.values())

    def load(self, name: str, version: int | None = None, roles: Iterable[str] | None = None):
        """The runtime of a model, cached: ``PointCloudModel`` for point-cloud classification,
        ``InputClassificationModel`` for cloud-only input classification (raw or Draco points),
        ``ImageCodec`` for image compression. The files of ``roles`` (default: all) are checked
        against their sha256 first; a broken model raises ModelError (recorded in ``errors``)."""
        cfg = self.config(name, version)
        key = (cfg.name, cfg.version)
        roles = set(cfg.raw["files"] if roles is None else roles)
        with self._lock:
            try:
                todo = roles - self._verified.get(key, set())
                if todo:
                    verify_files(cfg, todo)
                    self._verified.setdefault(key, set()).update(todo)
                if key not in self._loaded:
                    self._loaded[key] = _runtime(cfg)
            except ModelError as e:
                self._load_errors[cfg.ref] = (e.path, e.reason)
                self.errors.append((e.path, e.reason))
                raise
            self._load_errors.pop(cfg.ref, None)
            return self._loaded[key]


def _runtime(cfg: ModelConfig):
    cls = runtime_for(cfg.task)
    if cls is None:
        known = tasks()
        raise ModelError(cfg.path / "config.json", f"unknown task {cfg.task!r}; this splitinfer "
                                                   f"serves {', '.join(known[:-1])} and "
                                                   f"{known[-1]}")
    try:
        return cls(cfg)
    except ModelError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as e:  # a tables file numpy refuses, ...
        raise ModelError(cfg.path, f"{cls.__name__} cannot load {cfg.ref}: {type(e).__name__}: "
                                   f"{e}; restore the model's files or export it again") from None


SIZES = ("full", "lite", "micro")


def pick_models(repo, names: list[str] | None = None, sizes=SIZES) -> list:
    """The configs to demo: those named, or the most accurate of each size among the versions a
    bare name serves (the newest of each name)."""
    newest: dict[str, ModelConfig] = {}
    for c in repo.list("pointcloud-classification"):   # name then version order
        newest[c.name] = c
    configs = list(newest.values())
    if names:
        return [repo.config(n) for n in names]
    chosen = []
    for size in sizes:
        of_size = [c for c in configs if c.raw.get("size") == size]
        if not of_size:
            continue
        at_1024 = [c for c in of_size if int(c.raw.get("points", 0)) == 1024] or of_size

        def key(c):
            m = c.raw.get("metrics") or {}
            return (m.get("test_accuracy") or 0.0, -(m.get("bits_mean") or 1e9))
        chosen.append(max(at_1024, key=key))
    return chosen
