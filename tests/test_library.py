from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from generations.authoring.library import LTX2, MODEL_FREE, template_install, workflow_load
from generations.authoring.params import ParamsForm, parse_spec, resolve_workflow
from generations.models import Round, WorkflowTemplate

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "comfyui"
LTX2_VALUES = {
    "prompt": "a fox",
    "negative_prompt": "",
    "seed": "5",
    "frames": "97",
    "width": "768",
    "height": "512",
    "fps": "25",
    "steps": "12",
}


def ltx2_form(**changes: str) -> ParamsForm:
    spec = parse_spec(LTX2.param_spec, workflow=workflow_load(LTX2.workflow_file))
    return ParamsForm(spec, data={**LTX2_VALUES, **changes})


def test_it_resolves_the_model_free_spec_against_its_workflow() -> None:
    workflow = workflow_load(MODEL_FREE.workflow_file)
    spec = parse_spec(MODEL_FREE.param_spec, workflow=workflow)
    values = {"seed": 3, "frames": 12, "width": 64, "height": 48, "fps": 8}
    resolved = resolve_workflow(workflow, spec, values)
    assert resolved["1"]["inputs"] == {"width": 64, "height": 48, "batch_size": 12, "color": 8421504}
    assert resolved["2"]["inputs"]["seed"] == 3
    assert resolved["3"]["inputs"]["fps"] == 8
    assert resolved["4"]["inputs"]["codec"] == "h264"


def test_it_resolves_the_ltx2_spec_against_its_workflow() -> None:
    form = ltx2_form()
    assert form.is_valid(), form.errors
    resolved = resolve_workflow(workflow_load(LTX2.workflow_file), form.spec, form.cleaned_data)
    assert resolved["92:3"]["inputs"]["text"] == "a fox"
    assert resolved["92:62"]["inputs"]["value"] == 97
    assert resolved["92:89"]["inputs"]["width"] == 768
    assert resolved["92:99"]["inputs"]["value"] == resolved["92:102"]["inputs"]["value"] == 25
    assert resolved["92:9"]["inputs"]["steps"] == 12


def test_it_explains_the_ltx2_frame_rule() -> None:
    assert ltx2_form(frames="100").errors["frames"] == ["Must be 8k+1 (for example 17)."]


def test_it_explains_the_ltx2_size_rule() -> None:
    assert ltx2_form(width="736").errors["width"] == ["Must be a multiple of 64 (for example 128)."]


def test_it_refuses_an_ltx2_size_out_of_range() -> None:
    assert "less than or equal to 1088" in ltx2_form(height="1152").errors["height"][0]


def test_it_accepts_the_ltx2_defaults_with_a_prompt() -> None:
    spec = parse_spec(LTX2.param_spec)
    form = ParamsForm(spec, data={p.name: p.default for p in spec if p.default is not None} | {"prompt": "x"})
    assert form.is_valid(), form.errors


def test_it_refuses_an_odd_model_free_height() -> None:
    spec = parse_spec(MODEL_FREE.param_spec)
    form = ParamsForm(spec, data={"seed": "", "frames": "24", "width": "128", "height": "95", "fps": "24"})
    assert form.errors["height"] == ["Must be a multiple of 2 (for example 4)."]


def test_it_keeps_every_active_node_and_link_of_the_reference() -> None:
    ui = json.loads((FIXTURES / "templates" / "ltx2_text_to_video.json").read_text())
    graph = ui["definitions"]["subgraphs"][0]
    api = workflow_load(LTX2.workflow_file)
    real = {
        n["id"]: n for n in graph["nodes"] if n["mode"] == 0 and n["type"] not in ("MarkdownNote", "Reroute")
    }
    assert {f"92:{i}": n["type"] for i, n in real.items()} | {"75": "SaveVideo"} == {
        k: v["class_type"] for k, v in api.items()
    }
    for link in graph["links"]:
        if link["origin_id"] in real and link["target_id"] in real:
            name = real[link["target_id"]]["inputs"][link["target_slot"]]["name"]
            assert api[f"92:{link['target_id']}"]["inputs"][name] == [
                f"92:{link['origin_id']}",
                link["origin_slot"],
            ]


def test_it_gives_every_stock_node_its_required_inputs() -> None:
    object_info = json.loads((FIXTURES / "object_info.json").read_text())
    for template in (MODEL_FREE, LTX2):
        for node_id, node in workflow_load(template.workflow_file).items():
            required = object_info.get(node["class_type"], {}).get("input", {}).get("required", {})
            assert set(required) <= set(node["inputs"]), (template.slug, node_id)


def test_it_installs_the_templates_once(db: None) -> None:
    assert [template_install(b)[1] for b in (MODEL_FREE, LTX2)] == ["created", "created"]
    assert [template_install(b)[1] for b in (MODEL_FREE, LTX2)] == ["unchanged", "unchanged"]
    assert WorkflowTemplate.objects.filter(slug__in=["model-free-video", "ltx2-text-to-video"]).count() == 2


def test_it_restores_a_changed_template(db: None) -> None:
    template, _ = template_install(LTX2)
    WorkflowTemplate.objects.filter(pk=template.pk).update(param_spec=[], requirements="")
    template, action = template_install(LTX2)
    assert action == "updated"
    assert len(template.param_spec) == 8
    assert "LTX-2 nodes" in template.requirements


def test_it_loads_the_templates_with_the_command_and_adds_them_to_no_round(db: None) -> None:
    out = StringIO()
    call_command("load_templates", stdout=out)
    call_command("load_templates", stdout=out)
    lines = out.getvalue().splitlines()
    assert [line.split()[0:2] for line in lines[:2]] == [
        ["created", "model-free-video"],
        ["created", "ltx2-text-to-video"],
    ]
    assert lines[2].startswith("unchanged")
    assert not Round.objects.filter(templates__slug="ltx2-text-to-video").exists()


@pytest.mark.parametrize("builtin", [MODEL_FREE, LTX2], ids=lambda b: b.slug)
def test_it_ships_templates_that_pass_the_model_checks(builtin, db: None) -> None:  # type: ignore[no-untyped-def]
    WorkflowTemplate(slug=builtin.slug, **builtin.values()).full_clean()
