"""A long-form run that planted drifts are scored on: 5 speakers, each with a synthetic voice."""

from __future__ import annotations

import pytest
from plant_design import PASSAGE, PLANT_PARAMS, SPEAKERS, VOICE_NAMES

from bark_ablation.longform.generation import LongformDesign, run_longform
from bark_ablation.study.synthetic_voices import VOICES


@pytest.fixture(scope="session")
def voice_references():
    """Speaker -> its synthetic voice's recording (2 s, 24 kHz): scoring reference and plant source."""
    voices = {voice.name: voice for voice in VOICES}
    return {speaker: voices[name].utterance(0) for speaker, name in zip(SPEAKERS, VOICE_NAMES, strict=True)}


@pytest.fixture(scope="session")
def plant_run(tiny_models):
    """5 speakers x a 4-sentence passage x seed 0 x prompt and previous, 0.4 s per chunk."""
    design = LongformDesign.build(SPEAKERS, [PASSAGE], [0], ["prompt", "previous"])
    return run_longform(design, PLANT_PARAMS, model_set=tiny_models)
