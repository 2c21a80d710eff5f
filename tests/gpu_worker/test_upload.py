from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from gpu_worker import protocol, upload
from gpu_worker.backends import JobCancelled, JobError
from gpu_worker.upload import upload_file

if TYPE_CHECKING:
    from tests.gpu_worker.conftest import UploadServer


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "out.mp4"
    path.write_bytes(os.urandom(2 * upload.CHUNK_SIZE + 1234))
    return path


def test_it_puts_the_file_at_the_quoted_url(upload_server: UploadServer, video: Path) -> None:
    upload_file(upload_server.url(), video, "my video.mp4", "video/mp4", "gpu-a")
    [received] = upload_server.uploads
    assert received.path == "/uploads/signed-token/my%20video.mp4"
    assert received.body == video.read_bytes()


def test_it_sends_type_length_and_worker_headers(upload_server: UploadServer, video: Path) -> None:
    upload_file(upload_server.url(), video, "v.mp4", "video/mp4", "gpu-a")
    headers = upload_server.uploads[0].headers
    assert headers["content-type"] == "video/mp4"
    assert headers["content-length"] == str(video.stat().st_size)
    assert headers[protocol.WORKER_HEADER.lower()] == "gpu-a"
    assert "transfer-encoding" not in headers


def test_it_reads_the_file_in_chunks(video: Path) -> None:
    sizes = [len(chunk) for chunk in upload._chunks(video)]
    assert sizes == [upload.CHUNK_SIZE, upload.CHUNK_SIZE, 1234]


def test_it_retries_a_503_then_succeeds(upload_server: UploadServer, video: Path) -> None:
    upload_server.statuses[:] = [503]
    upload_file(upload_server.url(), video, "v.mp4", "video/mp4", "gpu-a", backoff=0)
    assert len(upload_server.uploads) == 2
    assert upload_server.uploads[1].body == video.read_bytes()


def test_it_turns_a_403_into_a_final_job_error(upload_server: UploadServer, video: Path) -> None:
    upload_server.statuses[:] = [403]
    with pytest.raises(JobError) as caught:
        upload_file(upload_server.url(), video, "v.mp4", "video/mp4", "gpu-a", backoff=0)
    assert caught.value.message == "Could not deliver the result (HTTP 403)."
    assert "signature expired" in caught.value.detail
    assert caught.value.retriable is False
    assert len(upload_server.uploads) == 1


def test_it_gives_up_retriably_after_repeated_5xx(upload_server: UploadServer, video: Path) -> None:
    upload_server.statuses[:] = [500, 502, 503]
    with pytest.raises(JobError) as caught:
        upload_file(upload_server.url(), video, "v.mp4", "video/mp4", "gpu-a", attempts=3, backoff=0)
    assert caught.value.retriable is True
    assert "HTTP 503" in caught.value.detail
    assert len(upload_server.uploads) == 3


def test_it_retries_when_the_web_app_is_unreachable(video: Path, closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}/u/"
    with pytest.raises(JobError) as caught:
        upload_file(url, video, "v.mp4", "video/mp4", "gpu-a", attempts=2, backoff=0)
    assert caught.value.retriable is True
    assert "failed 2 times" in caught.value.detail


def test_it_refuses_a_filename_with_a_path(upload_server: UploadServer, video: Path) -> None:
    with pytest.raises(ValueError, match="plain file name"):
        upload_file(upload_server.url(), video, "../v.mp4", "video/mp4", "gpu-a")
    assert upload_server.uploads == []


def test_it_keeps_a_finished_render_until_the_web_app_is_back(
    upload_server: UploadServer, video: Path
) -> None:
    upload_server.statuses[:] = [502, 503, 503, 503, 503, 503]  # a web app restarting
    problems: list[str] = []
    upload_file(
        upload_server.url(), video, "v.mp4", "video/mp4", "gpu-a", backoff=0.01, on_retry=problems.append
    )
    assert len(upload_server.uploads) == 7 and len(problems) == 6
    assert upload_server.uploads[-1].body == video.read_bytes()


def test_it_caps_the_backoff_between_tries(monkeypatch, closed_port: int, video: Path) -> None:
    slept: list[float] = []
    monkeypatch.setattr(upload, "_wait", lambda seconds, should_stop: slept.append(seconds))
    with pytest.raises(JobError):
        upload_file(f"http://127.0.0.1:{closed_port}/u/", video, "v.mp4", "video/mp4", "gpu-a", attempts=9)
    assert slept == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0, 5.0]


def test_it_tries_for_minutes_by_default() -> None:
    assert protocol.DELIVERY_PATIENCE_S >= 5 * 60


def test_it_gives_up_once_its_patience_runs_out(video: Path, closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}/u/"
    with pytest.raises(JobError) as caught:
        upload_file(url, video, "v.mp4", "video/mp4", "gpu-a", backoff=0.05, patience=0.3)
    assert caught.value.retriable is True


def test_it_stops_trying_once_the_attempt_is_cancelled(video: Path, closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}/u/"
    tries: list[str] = []
    with pytest.raises(JobCancelled):
        upload_file(
            url,
            video,
            "v.mp4",
            "video/mp4",
            "gpu-a",
            backoff=0.01,
            on_retry=tries.append,
            should_stop=lambda: len(tries) >= 3,
        )
    assert len(tries) == 3


def test_it_gives_up_at_once_when_the_attempt_no_longer_accepts_uploads(
    upload_server: UploadServer, video: Path
) -> None:
    upload_server.statuses[:] = [409]
    with pytest.raises(JobError) as caught:
        upload_file(upload_server.url(), video, "v.mp4", "video/mp4", "gpu-a", backoff=0)
    assert caught.value.retriable is False and len(upload_server.uploads) == 1
