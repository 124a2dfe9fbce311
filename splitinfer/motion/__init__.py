"""Latent-space motion analysis (issue 6): how well does warping a reference feature tensor by the
input's affine motion (translation rescaled by the layer's stride) predict the moved tensor?

Modules: :mod:`.warp` (motions, warping, predictable mask), :mod:`.metrics` (NRMSE),
:mod:`.architectures` (ResNet-34, DenseNet-121), :mod:`.extractors` (feature extractors),
:mod:`.images` (test images), :mod:`.sweeps` (synthetic motions), :mod:`.estimation` (global affine
motion estimation), :mod:`.video` (real video), :mod:`.plots`, :mod:`.analysis` (the whole run), :mod:`.cli`
(``splitinfer motion``).
Everything here needs torch; import submodules explicitly.
"""
