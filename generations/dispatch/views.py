"""The endpoints GPU workers call: the upload of an attempt's output, and the check a proxy asks
before it forwards an upload's body (Caddy's forward_auth)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from generations.dispatch.uploads import UploadRefused, take_store, upload_check
from generations.fleet.hosts import host_authenticate, security_event_record
from generations.models import GpuHost, SecurityEvent


def _host(request: HttpRequest) -> GpuHost:
    host = host_authenticate(request.headers.get("Authorization", ""))
    if host is None:
        if request.headers.get("Authorization"):
            security_event_record(kind=SecurityEvent.Kind.BAD_CREDENTIAL, detail=request.path[:200])
        raise UploadRefused("A GPU host's credential is required (HTTP Basic: its user and secret).", 401)
    return host


def _refused(exc: UploadRefused) -> HttpResponse:
    response = HttpResponse(str(exc), status=exc.status, content_type="text/plain")
    if exc.status == 401:
        response["WWW-Authenticate"] = 'Basic realm="workshop uploads"'
    return response


@csrf_exempt  # Authenticated by the host's credential and the signed URL, not a session.
@require_http_methods(["PUT"])
def take_upload(request: HttpRequest, token: str, filename: str) -> HttpResponse:
    chunks = iter(lambda: request.read(1024 * 1024), b"")
    try:
        take = take_store(token=token, filename=filename, chunks=chunks, host=_host(request))
    except UploadRefused as exc:
        return _refused(exc)
    return HttpResponse(f"stored take {take.pk}\n", status=201, content_type="text/plain")


@require_GET
def take_upload_check(request: HttpRequest) -> HttpResponse:
    """204 when the upload the proxy holds (X-Forwarded-Method, X-Forwarded-Uri) may send its body."""
    if request.headers.get("X-Forwarded-Method", "PUT") != "PUT":
        return HttpResponse(status=405)
    try:
        match = resolve(request.headers.get("X-Forwarded-Uri", "").split("?")[0])
    except Resolver404:
        return HttpResponse(status=404)
    if match.url_name != "take-upload":
        return HttpResponse(status=404)
    try:
        upload_check(token=match.kwargs["token"], host=_host(request))
    except UploadRefused as exc:
        return _refused(exc)
    return HttpResponse(status=204)
