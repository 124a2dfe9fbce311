"""``splitinfer models list`` and ``splitinfer models digest``: the model repository seen from the
command line (torch-free)."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Callable


def _report_broken(repo) -> None:
    for path, message in repo.errors:
        print(f"error: {path}: {message}", file=sys.stderr)


def models_list(a: argparse.Namespace) -> int:
    """Every model version as an aligned table (or JSON); broken ones as error lines, exit 1."""
    from .cli import UserError, format_table
    from .repository import ModelRepository
    repo = ModelRepository(a.models)
    rows = [c.summary() for c in repo.list()]
    if not rows and not repo.errors:
        raise UserError(f"no models in {repo.root}", "pass --models DIR (or set SPLITINFER_MODELS) "
                        "to a folder of <name>/<version>/config.json")
    if a.json:
        print(json.dumps(rows, indent=1))
    else:
        for r in rows:
            r["bits"], r["accuracy"] = r["bits_mean"], r["test_accuracy"]
        print(format_table(rows, ["name", "version", "digest", "task", "bits", "accuracy"]))
    _report_broken(repo)
    return 1 if repo.errors else 0


def models_digest(a: argparse.Namespace) -> int:
    """Print each model's digest; with --write record it in its config.json (files verified)."""
    from .repository import ModelError, ModelRepository, read_config, verify_files, write_digest
    repo = ModelRepository(a.models)
    wanted = set(a.name or [])
    failed = 0
    for cfg_path in sorted(repo.root.glob("*/*/config.json")):
        if wanted and cfg_path.parent.parent.name not in wanted:
            continue
        try:
            if a.write:
                digest, changed = write_digest(cfg_path)
                state = "written" if changed else "recorded"
            else:
                cfg = read_config(cfg_path, check_digest=False)
                verify_files(cfg)
                digest = cfg.digest
                recorded = cfg.raw.get("digest")
                state = ("recorded" if recorded == digest else
                         "not recorded" if recorded is None else
                         f"differs from the recorded {str(recorded)[:16]}")
        except ModelError as e:
            failed += 1
            print(f"error: {e}", file=sys.stderr)
            continue
        rel = cfg_path.parent.relative_to(repo.root)
        print(f"{digest}  {rel.parts[0]}@{rel.parts[1]}  {state}")
    return 1 if failed else 0


def register(models: argparse._SubParsersAction) -> None:
    """Add ``list`` and ``digest`` to the ``splitinfer models`` subcommands."""
    def add(name: str, func: Callable, help: str) -> argparse.ArgumentParser:
        p = models.add_parser(name, help=help, description=help)
        p.add_argument("--models", help="model repository (default: models/ or $SPLITINFER_MODELS)")
        p.set_defaults(func=func)
        return p

    p = add("list", models_list, "list every model version: name, version, short digest, task, "
                                 "bits, accuracy (broken models: one error line each on stderr, "
                                 "exit 1)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p = add("digest", models_digest, "print each model version's digest after checking its files "
                                     "against their sha256; --write records it in config.json")
    p.add_argument("name", nargs="*", help="only these models (default: all)")
    p.add_argument("--write", action="store_true",
                   help="record the digest as \"digest\" in each config.json (only that key)")
