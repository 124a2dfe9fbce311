"""Non-learned baselines the learned codecs are measured against (torch-free).

- :mod:`.draco`: Draco input compression of point clouds, decoded clouds classified by a plain
  PointNet (``splitinfer baseline draco``);
- :mod:`.image_codecs`: JPEG and WebP through Pillow (``splitinfer baseline image``);
- :mod:`.histogram`: quantized per-channel histograms sent as side information, the non-learned
  alternative to the learned adaptive entropy model.
"""
