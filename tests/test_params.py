from __future__ import annotations

import pytest

from generations.authoring.demo import SYNTHETIC_SPEC, SYNTHETIC_WORKFLOW
from generations.authoring.params import ParamsForm, SpecError, parse_spec, resolve_workflow

SPEC = parse_spec(SYNTHETIC_SPEC, workflow=SYNTHETIC_WORKFLOW)
GOOD = {"prompt": "a fox", "seed": "3", "frames": "17", "width": "64", "height": "64", "fps": "12"}


def form(**changes: str) -> ParamsForm:
    return ParamsForm(SPEC, data={**GOOD, **changes})


def test_it_accepts_valid_values() -> None:
    f = form()
    assert f.is_valid(), f.errors
    assert f.cleaned_data["frames"] == 17


def test_it_requires_a_prompt() -> None:
    assert form(prompt="   ").errors["prompt"] == ["This field is required."]


def test_it_refuses_numbers_out_of_range() -> None:
    assert "less than or equal to 121" in form(frames="129").errors["frames"][0]


def test_it_refuses_text_where_a_number_belongs() -> None:
    assert form(width="wide").errors["width"] == ["Enter a whole number."]


def test_it_explains_the_step_rule() -> None:
    assert form(frames="20").errors["frames"] == ["Must be 8k+1 (for example 17)."]


def test_it_picks_a_seed_when_left_blank() -> None:
    f = form(seed="")
    assert f.is_valid()
    assert isinstance(f.cleaned_data["seed"], int)


def test_it_writes_values_into_the_workflow_without_touching_the_template() -> None:
    resolved = resolve_workflow(SYNTHETIC_WORKFLOW, SPEC, {**GOOD, "frames": 17})
    assert resolved["1"]["inputs"]["frames"] == 17
    assert SYNTHETIC_WORKFLOW["1"]["inputs"]["frames"] == 25


def test_it_rejects_a_spec_that_targets_a_missing_node() -> None:
    with pytest.raises(SpecError, match="node 9"):
        parse_spec([{"name": "x", "type": "int", "targets": [["9", "x"]]}], workflow=SYNTHETIC_WORKFLOW)


def test_it_rejects_an_unknown_type() -> None:
    with pytest.raises(SpecError, match="unknown type"):
        parse_spec([{"name": "x", "type": "blob"}])
