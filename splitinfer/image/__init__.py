"""Learned image compression, torch-free at run time: the factorized-prior codec and the adaptive
encoding distributions (Ulhaq & Bajić, ICIP 2024, arXiv:2406.13059) (ONNX transforms + numpy + constriction)."""
