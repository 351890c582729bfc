"""The multi-exit multimodal policy: config, model, checkpoints, runner and cost profile.

Submodules import torch/transformers; import them explicitly (e.g.
``from deer_vla.model.runner import PolicyRunner``) so light-weight users of
deer_vla stay free of those imports.
"""
