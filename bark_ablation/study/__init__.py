"""The speaker-identity study: speaker similarity and its validation, statistics, run directories
(writing, merging), the report and its render check.
"""
