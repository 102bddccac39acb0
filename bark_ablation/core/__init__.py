"""The core: what every other wing builds on. Conditioning cells, parameters and profiles, voice
prompts, seeds, controls, devices, errors, the checks, audio features, WAV files, figures, the
network guard, and the seam an implementation of Bark fills in (``implementation``). Imports no
other wing.
"""
