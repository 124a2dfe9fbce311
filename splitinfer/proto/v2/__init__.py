"""Generated gRPC code for protos/splitinfer/v2/inference.proto (scripts/gen_protos.sh)."""
