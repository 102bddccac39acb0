"""History policies of long-form generation: which history each stage of a chunk receives.

Every chunk after the first is conditioned, stage by stage, either on the voice prompt or on the
previous chunk's full generation (its semantic, coarse and fine tokens: what Bark returns with
``output_full=True``, the recipe many forks use to keep prosody continuous). A policy id reads
like a cell id: one character per stage (semantic, coarse, fine), the stage's letter when that
stage receives the voice prompt, ``p`` when it receives the previous chunk's generation.

| id    | name       | semantic | coarse   | fine     |
|-------|------------|----------|----------|----------|
| `scf` | `prompt`   | prompt   | prompt   | prompt   |
| `ppp` | `previous` | previous | previous | previous |
| `pcf` |            | previous | prompt   | prompt   |
| `spf` |            | prompt   | previous | prompt   |
| `scp` |            | prompt   | prompt   | previous |
| `ppf`, `pcp`, `spp` | | (two stages carry over) | | |

The first chunk of every policy is conditioned on the voice prompt in every stage, so it is one
generation, shared. As with cells, the coarse stage reads its history's semantic AND coarse
tokens: ``spf`` gives the coarse stage the previous chunk's semantic and coarse tokens together.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from bark_ablation.core.conditioning import STAGES, Stage
from bark_ablation.core.errors import ParamsError

CARRY = "p"
"""The character of a stage that receives the previous chunk's generation."""
NAMES = {"prompt": "scf", "previous": "ppp"}
"""Named policies -> their ids."""


@dataclass(frozen=True)
class Policy:
    """A history policy, by its three-character id (module docstring)."""

    id: str

    def __post_init__(self) -> None:
        letters = [stage.value[0] for stage in STAGES]
        if (
            not isinstance(self.id, str)
            or len(self.id) != len(STAGES)
            or any(ch not in (letter, CARRY) for ch, letter in zip(self.id, letters, strict=False))
        ):
            raise ParamsError(
                "policies",
                f"unknown policy {self.id!r}: give prompt, previous, or an id of one character per stage "
                f"(semantic, coarse, fine): the stage's letter (prompt) or 'p' (previous chunk), e.g. pcf",
            )

    @classmethod
    def parse(cls, text: str) -> Policy:
        """A policy from its name (``prompt``, ``previous``) or id (``pcf``)."""
        return cls(NAMES.get(text, text) if isinstance(text, str) else text)

    @property
    def name(self) -> str:
        """``prompt``, ``previous``, or the id: the policy's name in files and tables."""
        return next((name for name, policy_id in NAMES.items() if policy_id == self.id), self.id)

    def carries(self, stage: Stage) -> bool:
        """Whether ``stage`` receives the previous chunk's generation (after the first chunk)."""
        return self.id[STAGES.index(stage)] == CARRY

    @property
    def carried_stages(self) -> tuple[Stage, ...]:
        return tuple(stage for stage in STAGES if self.carries(stage))

    @property
    def description(self) -> str:
        """``"semantic from the previous chunk; coarse, fine from the prompt"``."""
        carried = [s.value for s in self.carried_stages]
        kept = [s.value for s in STAGES if not self.carries(s)]
        parts = []
        if carried:
            parts.append(", ".join(carried) + " from the previous chunk")
        if kept:
            parts.append(", ".join(kept) + " from the prompt")
        return "; ".join(parts)


ALL_POLICIES: tuple[Policy, ...] = tuple(
    Policy("".join(CARRY if i in carried else stage.value[0] for i, stage in enumerate(STAGES)))
    for size in range(len(STAGES) + 1)
    for carried in itertools.combinations(range(len(STAGES)), size)
)
"""Every policy: ``prompt`` first, then one stage carried over, then two, then ``previous``."""


def validate_policies(values: Iterable[Policy | str]) -> tuple[Policy, ...]:
    """Policies from names, ids or :class:`Policy` values: at least one, none repeated."""
    if isinstance(values, str):
        raise ParamsError("policies", f"must be a list of policies, got one string {values!r}")
    policies = tuple(value if isinstance(value, Policy) else Policy.parse(value) for value in values)
    if not policies:
        raise ParamsError("policies", "must name at least one policy")
    repeated = [p.name for i, p in enumerate(policies) if p in policies[:i]]
    if repeated:
        raise ParamsError("policies", f"must not repeat a policy, got {repeated[0]!r} more than once")
    return policies
