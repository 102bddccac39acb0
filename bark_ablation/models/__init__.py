"""Model sets: the deterministic tiny set and its early-stop variant, full-size random sets, real
weights from the local caches (and fetching them when allowed), transformers' sets. Imports
``core`` only.
"""
