"""Bisect: the first release that shows a behaviour, by binary search over released versions.

The search assumes what ``git bisect`` assumes: once a release shows the behaviour, every later
one does, up to the newest release searched (which must show it). A release that cannot be
judged (will not install or import, or the workload fails) is skipped, as ``git bisect skip``
does: the search tries its neighbours, and when only unjudgeable releases are left between the
last release without the behaviour and the first with it, it reports that whole range.

Two questions are built in: a known behaviour (a probe of :mod:`bark_ablation.releases.probes`
comes out ``present``) and a token change (the greedy tokens differ from the oldest release's).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bark_ablation.core.errors import ReleaseError
from bark_ablation.releases.lines import ReleaseLine
from bark_ablation.releases.probes import ABSENT, NOT_APPLICABLE, PRESENT
from bark_ablation.releases.series import ran, run_release
from bark_ablation.releases.timeline import first_difference

Judgement = bool | None
"""True: shows it; False: does not; None: cannot be judged (the reason is recorded)."""


@dataclass
class BisectResult:
    """Outcome of :func:`bisect_releases`.

    Attributes:
        first: the first release that shows the behaviour (None when none does, or when every
            candidate after ``last_without`` could not be judged).
        last_without: the newest release known not to show it (None: the oldest candidate shows it).
        unjudged_between: releases between the two that could not be judged.
        judged: every release tested, in test order, with its judgement and reason.
    """

    first: str | None
    last_without: str | None
    unjudged_between: list[str]
    judged: list[tuple[str, Judgement, str]] = field(default_factory=list)

    @property
    def found(self) -> bool:
        """Whether some release searched shows the behaviour."""
        return self.first is not None or bool(self.unjudged_between)

    def describe(self, question: str) -> str:
        steps = f"{len(self.judged)} release(s) tested: " + ", ".join(
            f"{v} {'yes' if j else 'no' if j is False else 'skipped'}" for v, j, _ in self.judged
        )
        if not self.found:
            return (
                f"{question}: in no release searched; the newest, {self.last_without}, does not show it "
                f"({self.judged[0][2]})"
            )
        if self.last_without is None and self.unjudged_between:
            return (
                f"{question}: first shown in {self.first} or earlier: no release before it could be judged "
                f"({', '.join(self.unjudged_between)}) ({steps})"
            )
        if self.last_without is None:
            return f"{question}: already in the oldest release searched, {self.first} ({steps})"
        if self.unjudged_between:
            return (
                f"{question}: first shown in one of {', '.join(self.unjudged_between)}"
                f"{' or ' + self.first if self.first else ''} (none of the former could be judged); "
                f"not in {self.last_without} ({steps})"
            )
        return f"{question}: first shown in {self.first}; not in {self.last_without}, the release before it ({steps})"


def bisect_releases(versions: Sequence[str], judge: Callable[[str], tuple[Judgement, str]]) -> BisectResult:
    """Binary search over ``versions`` (oldest first) for the first that ``judge`` says shows it.

    ``judge(version)`` returns (judgement, reason). The newest version is judged first: when it
    does not show the behaviour, no release is searched further (``found`` is false); when it
    cannot be judged, ReleaseError. The oldest is judged next: when it shows it, the search ends
    there.
    """
    if not versions:
        raise ReleaseError("bisect: no releases to search")
    judged: list[tuple[str, Judgement, str]] = []
    memo: dict[int, Judgement] = {}

    def ask(index: int) -> Judgement:
        if index not in memo:
            judgement, reason = judge(versions[index])
            memo[index] = judgement
            judged.append((versions[index], judgement, reason))
        return memo[index]

    newest = len(versions) - 1
    if ask(newest) is None:
        raise ReleaseError(
            f"bisect: the newest release searched, {versions[newest]}, cannot be judged "
            f"({judged[-1][2]}); name an older one with --until"
        )
    if memo[newest] is False:
        return BisectResult(None, versions[newest], [], judged)
    if newest == 0 or ask(0) is True:
        return BisectResult(versions[0], None, [], judged)
    good, bad = 0, newest
    if memo[0] is None:  # the oldest cannot be judged: find the oldest judgeable one
        good = next((i for i in range(1, newest) if ask(i) is not None), None)
        if good is None:
            return BisectResult(versions[newest], None, list(versions[:newest]), judged)
        if memo[good] is True:
            return BisectResult(versions[good], None, list(versions[:good]), judged)
    while True:
        # Candidates strictly between good and bad; a skipped one is retried from its neighbours.
        pending = [i for i in range(good + 1, bad) if i not in memo]
        if not pending:
            break
        middle = pending[len(pending) // 2]
        judgement = ask(middle)
        if judgement is True:
            bad = middle
        elif judgement is False:
            good = middle
    unjudged = [versions[i] for i in range(good + 1, bad) if memo.get(i) is None]
    return BisectResult(versions[bad], versions[good], unjudged, judged)


def probe_judge(line: ReleaseLine, probe_id: str, **workload) -> Callable[[str], tuple[Judgement, str]]:
    """A judge: does the release show probe ``probe_id``? (``run_release`` with that probe only.)"""

    def judge(version: str) -> tuple[Judgement, str]:
        result = run_release(line, version, probes_only=True, probes=(probe_id,), surface=(), **workload)
        if not ran(result):
            return None, f"{result['status']}: {result.get('error')}"
        probe = next(p for p in result["probes"] if p["probe"] == probe_id)
        # A release without the feature (not-applicable) cannot show the behaviour: False.
        judgement = {PRESENT: True, ABSENT: False, NOT_APPLICABLE: False}.get(probe["status"])
        return judgement, f"{probe['status']}: {probe['evidence']}"

    return judge


def token_change_judge(line: ReleaseLine, reference: dict, **workload) -> Callable[[str], tuple[Judgement, str]]:
    """A judge: do the release's greedy tokens differ from ``reference`` (a workload result)?"""

    def judge(version: str) -> tuple[Judgement, str]:
        result = run_release(line, version, repeats=0, probes=(), surface=(), **workload)
        if not ran(result):
            return None, f"{result['status']}: {result.get('error')}"
        difference = first_difference(reference["greedy"], result["greedy"])
        return difference is not None, "equal" if difference is None else difference.describe()

    return judge


def surface_judge(line: ReleaseLine, check: str, **workload) -> Callable[[str], tuple[Judgement, str]]:
    """A judge: does surface check ``check`` fail in the release? (``run_release`` with that check
    only, no tokens, timings or probes.) ``not-applicable`` cannot be judged: the release lacks
    what the call needs, so it says nothing about the break."""
    from bark_ablation.releases.surface import FAILS, WORKS

    def judge(version: str) -> tuple[Judgement, str]:
        result = run_release(line, version, probes_only=True, probes=(), surface=(check,), **workload)
        if not ran(result):
            return None, f"{result['status']}: {result.get('error')}"
        if result.get("surface_error"):
            return None, f"surface not run: {result['surface_error']}"
        found = next((c for c in result.get("surface", []) if c["check"] == check), None)
        if found is None:
            return None, f"{check} did not run"
        if found["status"] == FAILS:
            where = f" (at {found['where']})" if found.get("where") else ""
            return True, f"fails: {found.get('error_type')}: {found.get('error')}{where}"
        if found["status"] == WORKS:
            return False, f"works: {found.get('reason')}"
        return None, f"{found['status']}: {found.get('reason')}"

    return judge


@dataclass
class SurfaceBisect:
    """Outcome of :func:`bisect_surface`: ``failing`` finds the first failing release (its
    ``first``); ``fixed`` (None when the newest release still fails, or nothing fails) the first
    release after it where the check works again (its ``first``)."""

    failing: BisectResult | None
    fixed: BisectResult | None
    judged: list[tuple[str, Judgement, str]]

    @property
    def found(self) -> bool:
        return self.failing is not None and self.failing.found

    def describe(self, check: str) -> str:
        if not self.found:
            return (
                f"{check}: fails in no release judged ({len(self.judged)} judged: "
                + ", ".join(f"{v} {'fails' if j else 'works' if j is False else 'skipped'}" for v, j, _ in self.judged)
                + ")"
            )
        text = self.failing.describe(f"{check} fails")
        if self.fixed is None:
            return (
                text + "; no release after it was judged to work (it still fails, or cannot be judged, up to the "
                "newest release searched)"
            )
        return text + "; " + self.fixed.describe(f"{check} works again")


def bisect_surface(
    versions: Sequence[str], judge: Callable[[str], tuple[Judgement, str]], anchors: Sequence[str] | None = None
) -> SurfaceBisect:
    """The first release of ``versions`` (oldest first) where a surface check fails, and the first
    after it where it works again.

    ``anchors`` (default: every release) are where breaks are looked for, newest first: the
    series' rows. The newest release is judged first; then anchors downwards until one fails (F).
    The first failing release is bisected between the nearest anchor below F that works (the
    oldest release when none does) and F; the first fixed one between F and the nearest release
    above it judged to work (None when none above it works: still failing). So with two separate
    breaks the newest is found; ``--until`` below it finds the older one. Each release is judged
    at most once.
    """
    memo: dict[str, tuple[Judgement, str]] = {}
    judged: list[tuple[str, Judgement, str]] = []

    def ask(version: str) -> tuple[Judgement, str]:
        if version not in memo:
            memo[version] = judge(version)
            judged.append((version, *memo[version]))
        return memo[version]

    def works_again(version: str) -> tuple[Judgement, str]:
        judgement, reason = ask(version)
        return (None if judgement is None else not judgement), reason

    versions = list(versions)
    if not versions:
        raise ReleaseError("bisect: no releases to search")
    newest = len(versions) - 1
    marks = sorted(
        {versions.index(a) for a in (anchors if anchors is not None else versions) if a in versions} | {newest}
    )
    failing_at, working_above = None, None
    for index in reversed(marks):
        judgement = ask(versions[index])[0]
        if judgement is True:
            failing_at = index
            break
        if judgement is False:
            working_above = index
    if failing_at is None:
        return SurfaceBisect(None, None, judged)
    working_below = next(
        (index for index in reversed(marks) if index < failing_at and ask(versions[index])[0] is False), 0
    )
    failing = bisect_releases(versions[working_below : failing_at + 1], ask)
    fixed = None if working_above is None else bisect_releases(versions[failing_at : working_above + 1], works_again)
    return SurfaceBisect(failing, fixed, judged)
