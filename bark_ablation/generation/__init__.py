"""The pipeline: text + prompt + conditioning + seed -> every stage's tokens and audio, sharing
stage results between cells.
"""
