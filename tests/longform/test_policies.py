"""History policies: names, ids, what each stage receives, and every refusal named."""

from __future__ import annotations

import pytest

from bark_ablation.core.conditioning import Stage
from bark_ablation.core.errors import ParamsError
from bark_ablation.longform.policies import ALL_POLICIES, Policy, validate_policies


def test_there_are_eight_policies_prompt_first_previous_last():
    assert [p.name for p in ALL_POLICIES] == ["prompt", "pcf", "spf", "scp", "ppf", "pcp", "spp", "previous"]
    assert len({p.id for p in ALL_POLICIES}) == 8


@pytest.mark.parametrize(
    "text, carried",
    [
        ("prompt", ()),
        ("previous", (Stage.SEMANTIC, Stage.COARSE, Stage.FINE)),
        ("pcf", (Stage.SEMANTIC,)),
        ("spf", (Stage.COARSE,)),
        ("scp", (Stage.FINE,)),
        ("ppf", (Stage.SEMANTIC, Stage.COARSE)),
    ],
)
def test_a_policy_carries_over_the_stages_its_id_marks(text, carried):
    policy = Policy.parse(text)
    assert policy.carried_stages == carried
    assert all(policy.carries(s) == (s in carried) for s in (Stage.SEMANTIC, Stage.COARSE, Stage.FINE))


def test_names_and_ids_are_the_same_policy():
    assert Policy.parse("prompt") == Policy("scf") and Policy("ppp").name == "previous"
    assert Policy.parse("pcf").description == "semantic from the previous chunk; coarse, fine from the prompt"


@pytest.mark.parametrize("text", ["everything", "pp", "pppp", "xcf", "cpf", "SCF", "---", ""])
def test_an_unknown_policy_is_refused_naming_the_field_and_the_rule(text):
    with pytest.raises(ParamsError, match=rf"policies: unknown policy {text!r}: give prompt, previous, or an id"):
        Policy.parse(text)


def test_policies_are_a_non_empty_list_without_repeats():
    assert validate_policies(["prompt", "ppp"]) == (Policy("scf"), Policy("ppp"))
    with pytest.raises(ParamsError, match="policies: must not repeat a policy, got 'previous' more than once"):
        validate_policies(["previous", "ppp"])
    with pytest.raises(ParamsError, match="at least one policy"):
        validate_policies([])
    with pytest.raises(ParamsError, match="one string"):
        validate_policies("prompt")
