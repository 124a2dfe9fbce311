"""Learned image compression, torch-free at run time: the factorized-prior codec and the adaptive
encoding distributions of REFERENCE.md section 2 (ONNX transforms + numpy + constriction)."""
