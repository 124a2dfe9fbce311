"""Training and export (needs torch: ``pip install splitinfer[train]``)."""
