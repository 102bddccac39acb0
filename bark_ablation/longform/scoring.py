"""Speaker similarity of every chunk: SECS against the voice prompt and against the run's first chunk.

For each chunk of a :class:`~bark_ablation.longform.generation.LongformRun`:

* ``secs_prompt``: SECS (cosine of speaker embeddings, Resemblyzer's GE2E unless another encoder
  is named, :mod:`bark_ablation.study.speaker_encoders`) against the speaker's reference audio, the prompt's fine
  codes decoded by the same model set's codec, as in the study;
* ``secs_first``: SECS against the first chunk of the same (speaker, passage, policy, seed) run:
  how far the voice has moved from where the passage started (1 for the first chunk itself).

A ``transform(chunk, references)`` may replace the audio that is scored (a planted drift,
:mod:`bark_ablation.longform.planting`); the first chunk is transformed like every other.
Embeddings are cached by the audio's bytes, so the shared first chunk is embedded once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from bark_ablation.generation.pipeline import SAMPLE_RATE
from bark_ablation.longform.generation import ChunkGeneration, LongformRun
from bark_ablation.study.similarity import cached_embedding, prompt_reference_audio, secs
from bark_ablation.study.speaker_encoders import DEFAULT_ENCODER

ChunkTransform = Callable[[ChunkGeneration, Mapping[str, np.ndarray]], np.ndarray]
"""(chunk, speaker name -> reference audio) -> the audio to score in place of the chunk's."""


@dataclass(frozen=True)
class ChunkScore:
    """One chunk's scores: SECS against the prompt's reference and against the run's first chunk;
    its duration in seconds."""

    prompt: str
    passage: int
    policy: str
    seed: int
    chunk: int
    secs_prompt: float
    secs_first: float
    duration_s: float

    @property
    def run_key(self) -> tuple[str, int, str, int]:
        """(speaker, passage, policy, seed)."""
        return self.prompt, self.passage, self.policy, self.seed


def score_chunks(
    run: LongformRun,
    *,
    device: str = "cpu",
    transform: ChunkTransform | None = None,
    references: Mapping[str, np.ndarray] | None = None,
    embedding_cache: dict[bytes, np.ndarray] | None = None,
    encoder: str = DEFAULT_ENCODER,
) -> tuple[list[ChunkScore], dict[str, np.ndarray], float]:
    """SECS of every chunk of ``run`` (module docstring), in the run's chunk order.

    ``references``: speaker name -> reference audio (24 kHz) to score against instead of the
    prompt decoded by the run's codec. ``embedding_cache``: a dict kept across calls (scoring the
    same run under several transforms embeds only what changed). ``encoder``: the speaker encoder
    (:mod:`~bark_ablation.study.speaker_encoders`).

    Returns the scores, the reference audio per speaker, and seconds per score.
    """
    cache = embedding_cache if embedding_cache is not None else {}

    def embedding_of(audio: np.ndarray, rate: int, source: str) -> np.ndarray:
        return cached_embedding(cache, audio, rate, source=source, device=device, encoder=encoder)

    given = dict(references or {})
    reference_audio = {
        prompt.name: given[prompt.name] if prompt.name in given else prompt_reference_audio(prompt, run.model_set)
        for prompt in run.design.prompts
    }
    reference_embeddings = {
        name: embedding_of(audio, SAMPLE_RATE, f"reference of prompt {name!r}")
        for name, audio in reference_audio.items()
    }
    started = time.perf_counter()
    scored: dict[int, ChunkScore] = {}
    for chunks in run.runs().values():
        first = None
        for chunk in chunks:
            audio = chunk.audio if transform is None else transform(chunk, reference_audio)
            embedding = embedding_of(audio, chunk.sample_rate, f"chunk {chunk.label} of {chunk.prompt}")
            first = embedding if first is None else first
            scored[id(chunk)] = ChunkScore(
                chunk.prompt,
                chunk.passage,
                chunk.policy.name,
                chunk.seed,
                chunk.chunk,
                secs(reference_embeddings[chunk.prompt], embedding),
                secs(first, embedding),
                chunk.duration_s,
            )
    scores = [scored[id(chunk)] for chunk in run.chunks]
    return scores, reference_audio, (time.perf_counter() - started) / max(len(scores), 1)
