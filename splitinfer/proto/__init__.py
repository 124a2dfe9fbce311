"""Generated gRPC code for protos/splitinfer/v1/inference.proto (scripts/gen_protos.sh)."""
