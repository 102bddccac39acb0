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
            f"{v} {'yes' if j else 'no' if j is False else 'skipped'}" for v, j, _ in self.judged)
        if not self.found:
            return (f"{question}: in no release searched; the newest, {self.last_without}, does not show it "
                    f"({self.judged[0][2]})")
        if self.last_without is None and self.unjudged_between:
            return (f"{question}: first shown in {self.first} or earlier: no release before it could be judged "
                    f"({', '.join(self.unjudged_between)}) ({steps})")
        if self.last_without is None:
            return f"{question}: already in the oldest release searched, {self.first} ({steps})"
        if self.unjudged_between:
            return (f"{question}: first shown in one of {', '.join(self.unjudged_between)}"
                    f"{' or ' + self.first if self.first else ''} (none of the former could be judged); "
                    f"not in {self.last_without} ({steps})")
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
        raise ReleaseError(f"bisect: the newest release searched, {versions[newest]}, cannot be judged "
                           f"({judged[-1][2]}); name an older one with --until")
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
        result = run_release(line, version, probes_only=True, probes=(probe_id,), **workload)
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
        result = run_release(line, version, repeats=0, **workload)
        if not ran(result):
            return None, f"{result['status']}: {result.get('error')}"
        difference = first_difference(reference["greedy"], result["greedy"])
        return difference is not None, "equal" if difference is None else difference.describe()

    return judge
