#!/usr/bin/env bash
# Regenerate splitinfer/proto/ from protos/ (needs grpcio-tools: pip install .[test]).
# v1 (deprecated) -> splitinfer/proto/inference_pb2*.py, v2 -> splitinfer/proto/v2/inference_pb2*.py.
# The generated modules are committed, so installs (edge, cloud) need no grpcio-tools.
# Imports are rewritten to be package-relative so they work from an installed package.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$PY" -m grpc_tools.protoc -I protos --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  protos/splitinfer/v1/inference.proto protos/splitinfer/v2/inference.proto
mkdir -p splitinfer/proto/v2
for v in v1 v2; do
  dest=splitinfer/proto; [ "$v" = v1 ] || dest=splitinfer/proto/$v
  for f in "$out"/splitinfer/$v/*.py "$out"/splitinfer/$v/*.pyi; do
    # `from splitinfer.vN import inference_pb2 as ...` -> `from . import inference_pb2 as ...`
    sed -E "s/^from splitinfer\.$v import /from . import /" "$f" > "$dest/$(basename "$f")"
  done
done
[ -f splitinfer/proto/__init__.py ] || cat > splitinfer/proto/__init__.py <<'PY'
"""Generated gRPC code for protos/splitinfer/v1/inference.proto (scripts/gen_protos.sh)."""
PY
[ -f splitinfer/proto/v2/__init__.py ] || cat > splitinfer/proto/v2/__init__.py <<'PY'
"""Generated gRPC code for protos/splitinfer/v2/inference.proto (scripts/gen_protos.sh)."""
PY
echo "generated: $(ls splitinfer/proto splitinfer/proto/v2)"
