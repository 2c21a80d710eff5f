"""The filmmaker's and the instructor's writes on the queue: submit, cancel, retry, top up a quota.

Each transition is a compare-and-set on status (and attempt), so a duplicate or late request
changes nothing; each tells the live pages itself once its transaction commits, and touches files
only after the commit."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from typing import Any

import redis
from django.db import IntegrityError, connection, transaction
from django.db.models.fields.files import FieldFile
from django.utils import timezone

from accounts.models import User
from generations.authoring.params import parse_spec, resolve_workflow
from generations.broker.jobs import job_retire, remove_job
from generations.broker.messages import signal_cancel, wake
from generations.live import groups
from generations.models import Generation, QuotaTopUp, Round, Take, WorkflowTemplate
from generations.queue.quota import Quota, quota_for
from workshop.rows import model_rows

log = logging.getLogger(__name__)

S = Generation.Status


class SubmissionRefused(Exception):
    """A submission that must not create a generation; the message is for the filmmaker."""


def generation_create(
    *,
    owner: User,
    round_id: int,
    template: WorkflowTemplate,
    params: dict[str, Any],
    submit_token: uuid.UUID | None = None,
    priority: bool = False,
    tell_owner: bool = True,
) -> Generation:
    """Create a queued generation from already validated params.

    A `submit_token` seen before returns the generation it created (a double click or a
    retried POST creates one generation). Filmmakers are held to the round's quota.
    `tell_owner=False`: the caller tells the owner's pages once it has committed (the submit view
    sends them the queue it rendered for its answer, groups.queue_rendered)."""
    try:
        with transaction.atomic():
            # A concurrent pause/close waits for us (the round is share-locked: other filmmakers'
            # submissions go on at once, a burst is not one long line), and so does a second
            # submission of the same filmmaker counting against the quota (their row is locked).
            rnd, offered, seen = _round_share_locked(round_id, template.pk, submit_token)
            if seen:
                return _resubmitted(Generation.objects.get(submit_token=submit_token), owner)
            quota = None if owner.is_instructor else quota_for(owner, rnd, lock=True) if rnd else None
            _check_open(rnd, offered, quota)
            assert rnd is not None
            workflow = resolve_workflow(template.workflow, parse_spec(template.param_spec), params)
            generation = Generation.objects.create(
                owner=owner,
                round=rnd,
                template=template,
                params=params,
                workflow=workflow,
                submit_token=submit_token,
                priority=priority and owner.is_instructor,
            )
            transaction.on_commit(wake)
            groups.generation_changed(
                owner_id=owner.pk, generation_id=generation.pk, queue=True, owner_pages=tell_owner
            )
    except IntegrityError:
        # The same token raced us in another request; it won.
        existing = Generation.objects.filter(submit_token=submit_token).first() if submit_token else None
        if existing is None:
            raise
        return _resubmitted(existing, owner)
    log.info("generation %s queued for %s", generation.pk, owner)
    return generation


def _resubmitted(existing: Generation, owner: User) -> Generation:
    """A form sent again returns what it created; someone else's token (a token is one form's,
    never shared) is refused, and says nothing of the generation it belongs to."""
    if existing.owner_id != owner.pk:
        raise SubmissionRefused("This form was already used: reload the page and submit again.")
    return existing


_token_field = Generation._meta.get_field("submit_token")


def _round_share_locked(
    round_id: int, template_id: int, submit_token: uuid.UUID | None
) -> tuple[Round | None, bool, bool]:
    """The round, locked FOR SHARE until the transaction ends (its state cannot change meanwhile, but
    other submissions may read it too; SQLite, the demo's, locks the whole file anyway), whether it
    offers the template, and whether the token was used already: one query (a burst's every submit
    asks)."""
    rounds, offers = Round._meta.db_table, Round.templates.through._meta.db_table
    generations = Generation._meta.db_table
    lock = " FOR SHARE" if connection.vendor == "postgresql" else ""
    found = model_rows(
        Round,
        f'SELECT *, EXISTS (SELECT 1 FROM "{offers}" WHERE round_id = %s AND workflowtemplate_id = %s) '
        f'AS offered, EXISTS (SELECT 1 FROM "{generations}" WHERE submit_token = %s) AS seen '
        f'FROM "{rounds}" WHERE id = %s{lock}',
        [round_id, template_id, _token_field.get_db_prep_value(submit_token, connection), round_id],
    )
    rnd = next(iter(found), None)
    if rnd is None:
        return None, False, False
    return rnd, bool(rnd.offered), bool(rnd.seen)


def _check_open(rnd: Round | None, offered: bool, quota: Quota | None) -> None:
    """Refuse a submission to a round that is not open, of a template it does not offer, or past the
    filmmaker's quota (None: an instructor, who has none)."""
    if rnd is None:
        raise SubmissionRefused("This round does not exist.")
    if rnd.status != Round.Status.OPEN:
        raise SubmissionRefused(
            f"The round “{rnd.title}” is {rnd.get_status_display().lower()}: no new generations."
        )
    if not offered:
        raise SubmissionRefused("This template is not offered in this round.")
    if quota is not None and quota.left <= 0:
        raise SubmissionRefused(
            f"You have 0 generations left in this round: you have used all {quota.total}. "
            "Cancelled and failed-by-the-system generations don't count; "
            "ask the instructor for more."
        )


def quota_top_up(*, round: Round, filmmaker: User, amount: int, by: User) -> QuotaTopUp:
    if amount <= 0:
        raise ValueError("A top-up adds at least one generation.")
    top_up = QuotaTopUp.objects.create(round=round, filmmaker=filmmaker, amount=amount, granted_by=by)
    # Their pages show the quota beside the queue; the live room shows it per filmmaker.
    groups.generation_changed(owner_id=filmmaker.pk, generation_id=0, queue=True)
    return top_up


def generation_cancel(*, generation: Generation) -> bool:
    """Cancel from any state that has not finished. Queued: at once. Dispatched: also taken
    out of RQ. Running: the worker is told through Redis and interrupts its backend. Takes
    of the attempt are removed, so a cancelled generation never shows one."""
    now = timezone.now()
    with transaction.atomic():
        current = Generation.objects.select_for_update().filter(pk=generation.pk).first()
        if current is None or current.status in Generation.TERMINAL:
            return False
        previous, attempt = current.status, current.attempt
        Generation.objects.filter(pk=current.pk).update(
            status=S.CANCELLED, finished_at=now, progress_message=""
        )
        # An upload that finished just before us must not survive as a take.
        takes_discard(Take.objects.filter(generation=current))
        groups.generation_changed(owner_id=current.owner_id, generation_id=current.pk, queue=True)
    if previous in Generation.IN_FLIGHT:
        try:
            signal_cancel(current.pk, attempt)
            if previous == S.DISPATCHED:
                remove_job(current.template.queue, current.pk, attempt)
            else:
                # RQ's dashboard shows it canceled, not started (the worker's end of it agrees).
                job_retire(current.pk, attempt, why="cancelled", cancelled=True)
        except redis.RedisError:
            # The worker's upload is refused and its events ignored all the same.
            log.warning("could not signal the cancel of generation %s", current.pk, exc_info=True)
    generation.refresh_from_db()
    log.info("generation %s cancelled (was %s)", generation.pk, previous)
    return True


def takes_discard(takes: Iterable[Take]) -> None:
    """Delete takes: their rows now, their files once the transaction commits (a rollback keeps them)."""
    files: list[FieldFile] = []
    for take in takes:
        files += [f for f in (take.file, take.poster, take.thumbnail) if f]
        take.delete()
    if files:
        transaction.on_commit(lambda: [f.storage.delete(f.name) for f in files])


def generation_retry(*, generation: Generation) -> bool:
    """failed → queued, same parameters, when the failure was the system's (not validation)."""
    if generation.status != S.FAILED or generation.retriable is False:
        raise SubmissionRefused("Only a generation that failed for a system reason can be retried.")
    with transaction.atomic():
        rnd = Round.objects.select_for_update().get(pk=generation.round_id)
        if rnd.status != Round.Status.OPEN:
            raise SubmissionRefused(f"The round “{rnd.title}” is not open: it cannot be retried now.")
        # The failure did not count; the retry does.
        if not generation.owner.is_instructor and quota_for(generation.owner, rnd).left <= 0:
            raise SubmissionRefused("You have 0 generations left in this round, so it cannot be retried.")
        n = Generation.objects.filter(pk=generation.pk, status=S.FAILED, attempt=generation.attempt).update(
            status=S.QUEUED,
            error_message="",
            error_detail="",
            retriable=None,
            progress=0,
            progress_message="",
            finished_at=None,
            started_at=None,
        )
        if n == 1:
            transaction.on_commit(wake)
            groups.generation_changed(owner_id=generation.owner_id, generation_id=generation.pk, queue=True)
    generation.refresh_from_db()
    return n == 1
