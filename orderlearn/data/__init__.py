"""Data: what a face is and where faces come from.

Readers of the official SCUT-FBP5500 layout (:mod:`.scut`) and of manifests (:mod:`.manifest`),
the training / validation / test splits (:mod:`.splits`), image loading (:mod:`.images`), face
alignment (:mod:`.alignment`), pair recipes (:mod:`.pairs`) and the synthetic SCUT-layout
generator, the embedded default (:mod:`.synthetic`).

Import order: above the vocabulary (``orderlearn.types``, ``orderlearn.errors``) and the
config; below everything else in the package.
"""
