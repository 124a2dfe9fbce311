"""The sidecar's routes: images (compress, decompress, analyze), models, health."""
