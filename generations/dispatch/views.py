"""The one endpoint GPU workers call: the upload of an attempt's output."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from generations.dispatch.uploads import UploadRefused, take_store


@csrf_exempt  # Authenticated by the signed URL, not a session: workers have no cookies.
@require_http_methods(["PUT"])
def take_upload(request: HttpRequest, token: str, filename: str) -> HttpResponse:
    chunks = iter(lambda: request.read(1024 * 1024), b"")
    try:
        take = take_store(
            token=token,
            filename=filename,
            chunks=chunks,
            content_type=request.headers.get("Content-Type", ""),
        )
    except UploadRefused as exc:
        return HttpResponse(str(exc), status=exc.status, content_type="text/plain")
    return HttpResponse(f"stored take {take.pk}\n", status=201, content_type="text/plain")
