#!/usr/bin/env bash
# Regenerate splitinfer/proto/ from protos/ (needs grpcio-tools: pip install .[test]).
# The generated modules are committed, so installs (edge, cloud) need no grpcio-tools.
# Imports are rewritten to be package-relative so they work from an installed package.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$PY" -m grpc_tools.protoc -I protos --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  protos/splitinfer/v1/inference.proto
mkdir -p splitinfer/proto
for f in "$out"/splitinfer/v1/*.py "$out"/splitinfer/v1/*.pyi; do
  # `from splitinfer.v1 import inference_pb2 as ...` -> `from . import inference_pb2 as ...`
  sed -E 's/^from splitinfer\.v1 import /from . import /' "$f" > "splitinfer/proto/$(basename "$f")"
done
[ -f splitinfer/proto/__init__.py ] || cat > splitinfer/proto/__init__.py <<'PY'
"""Generated gRPC code for protos/splitinfer/v1/inference.proto (scripts/gen_protos.sh)."""
PY
echo "generated: $(ls splitinfer/proto)"
