"""Remix: "Use these settings" on a take opens the round page with its settings in the form."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from django.urls import reverse

from accounts.models import User
from generations.authoring.params import SpecError, parse_spec
from generations.models import Round, Take, WorkflowTemplate
from generations.queue.access import round_current_for

REMIX_FLAG = "remix"


def _seed_names(template: WorkflowTemplate) -> set[str]:
    try:
        return {p.name for p in parse_spec(template.param_spec) if p.type == "seed"} or {"seed"}
    except SpecError:
        return {"seed"}


def remix_url(*, user: User, take: Take, same_seed: bool) -> str:
    """The round page with the take's settings in the query string (its form reads them as
    initial values). A new seed is left blank, so the form picks a random one. It lands on
    an open round that offers the template: the current one, else the take's own."""
    g = take.generation
    current = round_current_for(user)
    candidates = [r for r in (current, g.round) if r is not None]
    target = next(
        (
            r
            for r in candidates
            if r.status == Round.Status.OPEN and r.templates.filter(pk=g.template_id).exists()
        ),
        candidates[0],
    )
    skip = set() if same_seed else _seed_names(g.template)
    query = {"template": g.template.slug, REMIX_FLAG: take.pk}
    query.update({k: v for k, v in g.params.items() if k not in skip and k not in query})
    return f"{reverse('round', args=[target.pk])}?{urlencode(query)}#submit-form"


def remix_initial(query: Mapping[str, Any], template: WorkflowTemplate | None) -> dict[str, Any]:
    """The submit form's initial values from a remix link; empty for any other visit."""
    if template is None or REMIX_FLAG not in query:
        return {}
    try:
        names = [p.name for p in parse_spec(template.param_spec)]
    except SpecError:
        return {}
    return {n: query[n] for n in names if n in query and n not in ("template", REMIX_FLAG)}
