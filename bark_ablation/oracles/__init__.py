"""Independent checks of Bark's generation paths: the early-stop rule, the top-k/top-p filters, KV-
cache equivalence and the fine stage's window layout.
"""
