"""Benchmarks of each stage and the splitting of a suite across CI jobs and GPUs."""
