"""The worker runs one function, signed by the conductor, and nothing else (gpu_worker.guard)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer

from gpu_worker import protocol, signing
from gpu_worker.guard import JobRefused, check

KEY = Ed25519PrivateKey.generate()
PUBLIC = KEY.public_key()
KWARGS = {
    "generation_id": 7,
    "attempt": 1,
    "template": "t",
    "workflow": {},
    "params": {"seed": 1},
    "upload_url": "u",
}


def job(
    func: str = protocol.JOB_FUNCTION, *, kwargs=None, job_id: str = "gen-7-a1", sign: bool = True, **extra
):  # type: ignore[no-untyped-def]
    kwargs = dict(KWARGS if kwargs is None else kwargs)
    if sign:
        kwargs[signing.SIGNATURE_KWARG] = signing.sign(
            KEY, job_id=job_id, function=func, kwargs=kwargs, ttl=60
        )
    return Job.create(func, kwargs=kwargs, id=job_id, connection=Redis(), serializer=JSONSerializer, **extra)


def refused(j: Job, key=PUBLIC) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(JobRefused) as exc:
        check(j, key)
    return exc.value.reason


def test_it_accepts_a_signed_generation_job() -> None:
    check(job(), KEY.public_key())


def test_it_refuses_another_function_without_importing_it() -> None:
    assert "not gpu_worker.jobs.run_generation" in refused(job("no_such_module.boom"))


def test_it_refuses_positional_arguments() -> None:
    j = Job.create(protocol.JOB_FUNCTION, args=[1], connection=Redis(), serializer=JSONSerializer)
    assert "positional" in refused(j)


def test_it_refuses_rq_callbacks_and_retries() -> None:
    from rq import Retry

    assert "callbacks" in refused(job(on_success="os.getcwd"))
    assert "callbacks" in refused(job(retry=Retry(max=3)))


def test_it_refuses_an_unsigned_job() -> None:
    assert "not signed" in refused(job(sign=False))


def test_it_refuses_an_altered_job() -> None:
    j = job()
    j.kwargs["params"]["seed"] = 2
    assert "does not match" in refused(j)


def test_it_refuses_a_signed_job_under_another_id() -> None:
    signed = job().kwargs
    assert "does not match" in refused(job(kwargs=signed, job_id="gen-7-a2", sign=False))


def test_it_refuses_an_expired_job() -> None:
    with pytest.raises(signing.BadSignature, match="expired"):
        signing.verify(
            KEY.public_key(),
            job_id="gen-7-a1",
            function=protocol.JOB_FUNCTION,
            kwargs=job().kwargs,
            now=2**40,
        )


def test_it_refuses_a_job_signed_with_another_key() -> None:
    assert "does not match" in refused(job(), Ed25519PrivateKey.generate().public_key())


def test_it_reads_a_verify_key_in_its_text_form() -> None:
    text = signing.public_key_text(KEY)
    check(job(), signing.public_key_from_text(text))
    with pytest.raises(ValueError):
        signing.public_key_from_text("not a key")
