from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from generations.authoring.importer import WorkflowImportError, is_output_node, propose, workflow_parse
from generations.authoring.library import LTX2, workflow_load

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "comfyui"
MODEL_FREE = json.loads((FIXTURES / "model_free_workflows.json").read_text())
USED = json.loads((FIXTURES / "workflows_used.json").read_text())


def fields(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in propose(workflow_parse(json.dumps(workflow))).fields}


def pick(spec: dict[str, Any], *keys: str) -> tuple[Any, ...]:
    return tuple(spec.get(k) for k in keys)


def sampler_workflow() -> dict[str, Any]:
    """A text-to-image graph: two encoders feeding a KSampler's positive and negative."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "bad hands", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
        "5": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "positive": ["3", 0],
                "negative": ["2", 0],
                "latent_image": ["4", 0],
            }
            | {
                "seed": 1,
                "steps": 20,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
            },
        },
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "x"}},
    }


def test_it_proposes_the_model_free_mapping() -> None:
    found = fields(MODEL_FREE["video_mp4_h264"])
    assert list(found) == ["seed", "frames", "width", "height", "fps"]
    assert found["frames"]["targets"] == [["1", "batch_size"]]
    assert pick(found["width"], "type", "default", "min", "max", "step") == ("int", 128, 64, 2048, 2)
    assert found["fps"]["type"] == "int"


def test_it_proposes_the_ltx2_mapping() -> None:
    found = fields(workflow_load(LTX2.workflow_file))
    assert list(found) == ["prompt", "negative_prompt", "seed", "frames", "width", "height", "fps", "steps"]
    assert found["prompt"]["targets"] == [["92:3", "text"]]
    assert found["negative_prompt"]["targets"] == [["92:4", "text"]]
    assert found["negative_prompt"]["required"] is False
    assert found["seed"]["targets"] == [["92:11", "noise_seed"], ["92:67", "noise_seed"]]
    assert pick(found["frames"], "targets", "step", "offset") == ([["92:62", "value"]], 8, 1)
    assert found["width"]["targets"] == [["92:89", "width"]]
    assert sorted(found["fps"]["targets"]) == [["92:102", "value"], ["92:99", "value"]]
    assert pick(found["steps"], "default", "min", "max", "targets") == (20, 1, 50, [["92:9", "steps"]])


def test_it_tells_a_negative_prompt_from_the_prompt() -> None:
    found = fields(sampler_workflow())
    assert found["prompt"]["targets"] == [["3", "text"]]
    assert found["negative_prompt"]["default"] == "bad hands"
    assert found["width"]["step"] == 8
    assert "frames" not in found


def test_it_lists_weights_and_newer_nodes_as_requirements() -> None:
    proposal = propose(workflow_load(LTX2.workflow_file))
    assert proposal.kind == "video"
    assert proposal.requirements.startswith(
        "Weights: gemma_3_12B_it_fp4_mixed.safetensors, ltx-2-19b-dev-fp8"
    )
    assert "nodes not in stock ComfyUI 0.3.64: LTXAVTextEncoderLoader" in proposal.requirements
    assert len(proposal.requirements) <= 300


def test_it_reads_every_recorded_model_free_workflow() -> None:
    kinds = {name: propose(workflow_parse(json.dumps(wf))).kind for name, wf in MODEL_FREE.items()}
    assert kinds["image_png"] == "image"
    assert kinds["video_webm_vp9"] == kinds["animated_webp"] == "video"


def test_it_keeps_an_image_batch_out_of_frames_outside_a_video() -> None:
    assert list(fields(MODEL_FREE["image_png"])) == ["width", "height"]


def test_it_refuses_a_ui_format_file_with_the_export_hint() -> None:
    raw = (FIXTURES / "templates" / "ltx2_text_to_video.json").read_bytes()
    with pytest.raises(WorkflowImportError, match=r"Workflow → Export \(API\)"):
        workflow_parse(raw)


def test_it_refuses_invalid_json() -> None:
    with pytest.raises(WorkflowImportError, match="not valid JSON .line 1, column 2"):
        workflow_parse(b"{nodes")


def test_it_refuses_a_workflow_without_an_output_node() -> None:
    with pytest.raises(WorkflowImportError, match="no output node"):
        workflow_parse(json.dumps(USED["12_invalid_prompts::invalid_case::no_output_node"]))


def test_it_refuses_a_link_to_a_missing_node() -> None:
    with pytest.raises(WorkflowImportError, match="links to node 99"):
        workflow_parse(json.dumps(USED["12_invalid_prompts::invalid_case::link_to_nonexistent_node"]))


def test_it_refuses_a_node_without_a_class() -> None:
    with pytest.raises(WorkflowImportError, match="has no class_type"):
        workflow_parse(json.dumps(USED["12_invalid_prompts::invalid_case::node_without_class_type"]))


def test_it_knows_output_nodes_by_list_and_by_name() -> None:
    assert is_output_node("SaveWEBM") and is_output_node("VHS_VideoCombine")
    assert is_output_node("SaveSomethingNew") and is_output_node("PreviewAny")
    assert not is_output_node("KSampler")
