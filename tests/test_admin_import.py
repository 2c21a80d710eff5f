from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.files.uploadedfile import SimpleUploadedFile
from django.forms import CheckboxInput, Select, SelectMultiple
from django.test import Client

from generations.authoring.import_forms import ImportMapping
from generations.authoring.library import workflow_load
from generations.authoring.params import parse_spec
from generations.models import WorkflowTemplate
from tests.conftest import make_user

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "comfyui"
URL = "/admin/generations/workflowtemplate/import/"


def upload(client: Client, name: str, content: bytes) -> Any:
    return client.post(URL, {"file": SimpleUploadedFile(name, content, content_type="application/json")})


def as_posted(mapping: ImportMapping, **changes: Any) -> dict[str, Any]:
    """What the browser sends back for the mapping page as shown, with some fields changed."""
    data: dict[str, Any] = {"workflow": mapping.workflow_json, "confirm": "Create the template"}
    data.update((f.html_name, f.value()) for f in mapping.fields.management_form)
    for form in [mapping.meta, *mapping.fields.forms]:
        for field in form:
            value, widget = field.value(), field.field.widget
            if isinstance(widget, CheckboxInput | SelectMultiple):
                if value:
                    data[field.html_name] = "on" if value is True else value
            elif isinstance(widget, Select) and value in (None, ""):
                data[field.html_name] = str(widget.choices[0][0])  # a browser sends the first option
            else:
                data[field.html_name] = "" if value is None else value
    for key, value in changes.items():
        data.pop(key) if value is None else data.__setitem__(key, value)
    return data


def proposed(client: Client) -> ImportMapping:
    content = json.dumps(workflow_load("ltx2_text_to_video.json")).encode()
    return upload(client, "ltx2_t2v.json", content).context["mapping"]


def test_it_links_the_import_from_the_changelist(admin_client: Client) -> None:
    page = admin_client.get("/admin/generations/workflowtemplate/").content.decode()
    assert f'href="{URL}"' in page


def test_it_proposes_a_mapping_for_an_upload(admin_client: Client) -> None:
    response = upload(
        admin_client, "ltx2_t2v.json", json.dumps(workflow_load("ltx2_text_to_video.json")).encode()
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert 'value="negative_prompt"' in page and "92:62 Length (PrimitiveInt): value = 121" in page
    assert response.context["mapping"].meta["slug"].value() == "ltx2-t2v"


def test_it_creates_the_template_once_confirmed(admin_client: Client) -> None:
    mapping = proposed(admin_client)
    response = admin_client.post(
        URL, as_posted(mapping, **{"name": "LTX-2 imported", "slug": "ltx2-imported"})
    )
    template = WorkflowTemplate.objects.get(slug="ltx2-imported")
    assert response.status_code == 302 and response.url.endswith(f"/{template.pk}/change/")
    assert [f["name"] for f in template.param_spec][:4] == ["prompt", "negative_prompt", "seed", "frames"]
    assert "ltx-2-19b-dev-fp8.safetensors" in template.requirements
    assert len(parse_spec(template.param_spec, workflow=template.workflow)) == 8


def test_it_takes_the_admins_edits(admin_client: Client) -> None:
    mapping = proposed(admin_client)
    edits = {"slug": "edited", "fields-4-step": "64", "fields-4-default": "1280", "fields-7-use": None}
    edits |= {"fields-8-use": "on", "fields-8-name": "cfg", "fields-8-type": "float", "fields-8-default": "4"}
    admin_client.post(URL, as_posted(mapping, **edits) | {"fields-8-targets": ['["92:47", "cfg"]']})
    spec = {f["name"]: f for f in WorkflowTemplate.objects.get(slug="edited").param_spec}
    assert spec["width"]["step"] == 64 and "steps" not in spec
    cfg = {"name": "cfg", "label": "Cfg", "type": "float", "default": 4.0, "required": False}
    assert spec["cfg"] == cfg | {"targets": [["92:47", "cfg"]]}


def test_it_refuses_a_default_that_breaks_its_own_rule(admin_client: Client) -> None:
    mapping = proposed(admin_client)
    response = admin_client.post(URL, as_posted(mapping, **{"slug": "bad", "fields-3-default": "100"}))
    assert response.status_code == 200
    assert "Default of frames: Must be 8k+1 (for example 17)." in response.content.decode()
    assert not WorkflowTemplate.objects.filter(slug="bad").exists()


def test_it_refuses_a_name_already_taken(admin_client: Client, template: WorkflowTemplate) -> None:
    mapping = proposed(admin_client)
    response = admin_client.post(URL, as_posted(mapping, name=template.name))
    assert "Workflow template with this Name already exists." in response.content.decode()
    assert WorkflowTemplate.objects.count() == 1


def test_it_refuses_a_ui_format_upload_with_the_export_hint(admin_client: Client) -> None:
    response = upload(
        admin_client, "ltx2.json", (FIXTURES / "templates" / "ltx2_text_to_video.json").read_bytes()
    )
    assert response.status_code == 200
    assert "Workflow → Export (API)" in response.content.decode()
    assert "mapping" not in response.context


def test_it_sends_a_non_staff_user_to_the_login(owner_client: Client) -> None:
    response = owner_client.get(URL)
    assert response.status_code == 302 and response.url.startswith("/admin/login/")
    workflow = json.dumps(workflow_load("model_free_video.json"))
    owner_client.post(URL, {"workflow": workflow, "name": "x", "slug": "x", "queue": "video"})
    assert not WorkflowTemplate.objects.exists()


def test_it_refuses_staff_without_the_add_permission(db) -> None:  # type: ignore[no-untyped-def]
    # Instructors may add templates (accounts/backends.py); other staff need the permission given.
    client = Client()
    client.force_login(make_user("clerk", is_staff=True))
    assert client.get(URL).status_code == 403


def test_it_lets_an_instructor_import_a_workflow(instructor) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(instructor)
    assert client.get(URL).status_code == 200


def test_it_shows_the_requirements_on_the_change_page(admin_client: Client) -> None:
    from generations.authoring.library import LTX2, template_install

    template, _ = template_install(LTX2)
    page = admin_client.get(f"/admin/generations/workflowtemplate/{template.pk}/change/").content.decode()
    assert 'id="template-requirements">Needs on the GPU worker: LTX-2 nodes' in page
