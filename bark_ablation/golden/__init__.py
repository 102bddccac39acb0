"""Golden data: the store, the drift comparison and its check workflow, calibration perturbations,
and behaviour diffs between implementations.
"""
