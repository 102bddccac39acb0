"""Bark implementations across their releases: overlays, a fixed workload, a timeline, a bisect.

One environment holds the tested torch and numpy; each release of an implementation is installed
beside it into its own overlay directory (``pip install --target``) and runs the same workload in
a subprocess with the overlay first on ``sys.path``. See :mod:`bark_ablation.releases.series`.
"""
