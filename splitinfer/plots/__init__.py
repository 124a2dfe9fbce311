"""Figures and result tables (numpy + matplotlib; no torch)."""
