"""One progress line over a whole study, and at the end what happened to its samples.

The line (tqdm, on stderr) counts samples over every unit of the run, with units done, retries
and the ETA tqdm estimates from the samples made in this process (read-back samples count as
done from the start, not in the rate). :meth:`StudyProgress.summary_line` says at the end what was
read back from an interrupted run, what was skipped, what was generated and what was retried;
:meth:`StudyProgress.record` is the same for ``summary.json``.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from bark_ablation.generation.pipeline import Generation
from bark_ablation.study.design import Unit


class StudyProgress:
    """Counts a run's samples by unit as they are made.

    ``units``: the units this run covers; ``samples_per_unit``: cells x seeds; ``resumed``: unit
    id -> samples read back from an interrupted run; ``show``: draw the progress line.
    """

    def __init__(
        self,
        units: Sequence[Unit],
        samples_per_unit: int,
        resumed: Mapping[str, int] | None = None,
        *,
        show: bool = True,
        executor: str = "local",
    ):
        self.executor = executor
        self.samples_per_unit = samples_per_unit
        self._unit_of = {(unit.prompt.name, unit.text): unit.id for unit in units}
        self.done = {unit.id: (resumed or {}).get(unit.id, 0) for unit in units}
        self.resumed = sum(self.done.values())
        self.skipped_units = sum(1 for count in self.done.values() if count == samples_per_unit)
        """Units complete when the run started: nothing of theirs runs again."""
        self.generated = 0
        self.retried: Counter = Counter()
        """Unit id -> how many times it was started again after its worker died."""
        self._bar = None
        if show:
            import tqdm

            self._bar = tqdm.tqdm(
                total=len(units) * samples_per_unit,
                initial=self.resumed,
                unit="sample",
                file=sys.stderr,
                dynamic_ncols=True,
            )
            self._show()

    @property
    def units_done(self) -> int:
        return sum(1 for count in self.done.values() if count >= self.samples_per_unit)

    def __call__(self, generation: Generation, index: int = 0, total: int = 0) -> None:
        """Count one new sample (an ``on_result`` callback)."""
        self.done[self._unit_of[(generation.prompt, generation.text)]] += 1
        self.generated += 1
        if self._bar is not None:
            self._bar.update(1)
            self._show()

    def unit_retried(self, unit_id: str) -> None:
        """Count a unit started again (its samples made so far are kept)."""
        self.retried[unit_id] += 1
        self._show()

    def _show(self) -> None:
        if self._bar is None:
            return
        retries = sum(self.retried.values())
        text = f"units {self.units_done}/{len(self.done)}" + (f", retried {retries}" if retries else "")
        self._bar.set_postfix_str(text, refresh=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def record(self) -> dict[str, Any]:
        """What happened, for ``summary.json``'s ``execution``."""
        return {
            "executor": self.executor,
            "units": len(self.done),
            "samples": len(self.done) * self.samples_per_unit,
            "resumed_samples": self.resumed,
            "skipped_units": self.skipped_units,
            "generated_samples": self.generated,
            "retried_units": dict(sorted(self.retried.items())),
        }

    def summary_line(self) -> str:
        """One line: units and samples, read back, skipped, generated, retried."""
        parts = [f"{len(self.done)} units, {len(self.done) * self.samples_per_unit} samples"]
        if self.resumed:
            parts.append(
                f"{self.resumed} read back from the interrupted run (units complete there, skipped: {self.skipped_units})"
            )
        parts.append(f"{self.generated} generated ({self.executor})")
        if self.retried:
            parts.append(
                "retried after their worker died: "
                + ", ".join(f"{unit} x{count}" for unit, count in sorted(self.retried.items()))
            )
        else:
            parts.append("nothing retried")
        return "; ".join(parts)
