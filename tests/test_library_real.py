"""The built-in templates against a real ComfyUI's /object_info: the input names the workflows use
and the ranges their forms allow must be ones the server accepts."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from generations.authoring.library import BUILT_INS, LTX2, MODEL_FREE, BuiltIn, workflow_load
from generations.authoring.params import SEED_MAX, parse_spec


@pytest.fixture(scope="module")
def object_info(real_comfyui: str) -> dict[str, Any]:
    return httpx.get(real_comfyui + "/object_info", timeout=60).json()


def _inputs(info: dict[str, Any], class_type: str) -> dict[str, Any]:
    declared = info[class_type]["input"]
    return {**declared.get("required", {}), **declared.get("optional", {})}


def _wrong_inputs(builtin: BuiltIn, info: dict[str, Any]) -> list[str]:
    """Inputs the server does not declare, and required ones the workflow leaves out."""
    wrong = []
    for node_id, node in workflow_load(builtin.workflow_file).items():
        if node["class_type"] not in info:
            continue
        declared = _inputs(info, node["class_type"])
        required = info[node["class_type"]]["input"].get("required", {})
        wrong += [f"{node_id}.{name}: unknown" for name in node["inputs"] if name not in declared]
        wrong += [f"{node_id}.{name}: missing" for name in required if name not in node["inputs"]]
    return wrong


def _out_of_range(builtin: BuiltIn, info: dict[str, Any]) -> list[str]:
    """Form fields whose lowest or highest value lies outside what the targeted input accepts."""
    workflow, wrong = workflow_load(builtin.workflow_file), []
    for param in parse_spec(builtin.param_spec, workflow=workflow):
        # A seed field without bounds takes 0..SEED_MAX (a blank one is drawn from that range).
        low = 0 if param.type == "seed" and param.min is None else param.min
        high = SEED_MAX if param.type == "seed" and param.max is None else param.max
        for node_id, name in param.targets:
            class_type = workflow[node_id]["class_type"]
            if class_type not in info or param.type == "text":
                continue  # a text field's max is its length, not a value
            declared = _inputs(info, class_type)[name]
            limits = declared[1] if len(declared) > 1 else {}
            target = f"{class_type}.{name}"
            if low is not None and "min" in limits and low < limits["min"]:
                wrong.append(f"{param.name}: {low} < {target} min {limits['min']}")
            if high is not None and "max" in limits and high > limits["max"]:
                wrong.append(f"{param.name}: {high} > {target} max {limits['max']}")
    return wrong


@pytest.mark.parametrize("builtin", BUILT_INS, ids=lambda b: b.slug)
def test_it_uses_only_inputs_the_server_declares(builtin: BuiltIn, object_info: dict[str, Any]) -> None:
    assert _wrong_inputs(builtin, object_info) == []


@pytest.mark.parametrize("builtin", BUILT_INS, ids=lambda b: b.slug)
def test_it_lets_the_form_through_only_values_the_server_accepts(
    builtin: BuiltIn, object_info: dict[str, Any]
) -> None:
    assert _out_of_range(builtin, object_info) == []


def test_it_runs_the_model_free_template_on_stock_nodes(object_info: dict[str, Any]) -> None:
    classes = {node["class_type"] for node in workflow_load(MODEL_FREE.workflow_file).values()}
    assert classes - set(object_info) == set()


def test_it_lacks_only_ltx2_nodes_for_the_ltx2_template(object_info: dict[str, Any]) -> None:
    # What the template's requirements promise: everything else is in a stock ComfyUI.
    classes = {node["class_type"] for node in workflow_load(LTX2.workflow_file).values()}
    assert all(c.startswith(("LTXV", "LTXAV")) or c == "ManualSigmas" for c in classes - set(object_info))
