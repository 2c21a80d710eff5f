from __future__ import annotations

from pathlib import PurePosixPath

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models


class WorkflowTemplate(models.Model):
    """A ComfyUI workflow (API format) and the user-facing fields mapped onto it."""

    class Kind(models.TextChoices):
        VIDEO = "video", "Video"
        IMAGE = "image", "Image"

    name = models.CharField(max_length=120, unique=True)
    slug = models.SlugField(max_length=60, unique=True)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.VIDEO)
    description = models.TextField(blank=True)
    workflow = models.JSONField(help_text="ComfyUI workflow in API format")
    param_spec = models.JSONField(
        default=list,
        help_text="List of fields: name, label, type, default, min, max, targets [[node, input]]",
    )
    queue = models.CharField(max_length=40, default="video", help_text="The RQ queue whose workers serve it")
    estimated_seconds = models.PositiveIntegerField(default=120)
    timeout_seconds = models.PositiveIntegerField(
        default=1800, help_text="A job running longer is interrupted and failed"
    )
    requirements = models.CharField(
        max_length=300, blank=True, help_text="What a worker needs to run it (weights, custom nodes)"
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from generations.authoring.params import SpecError, parse_spec

        if self.queue not in settings.RQ_QUEUE_NAMES:
            raise ValidationError(
                {"queue": f"Unknown queue; configured: {', '.join(settings.RQ_QUEUE_NAMES)}"}
            )
        try:
            parse_spec(self.param_spec, workflow=self.workflow)
        except SpecError as exc:
            raise ValidationError({"param_spec": str(exc)}) from exc


class Workshop(models.Model):
    """The day itself: its name, date and GPU budget, and what the projector shows."""

    name = models.CharField(max_length=160)
    date = models.DateField(null=True, blank=True)
    gpu_budget = models.DecimalField(
        max_digits=10, decimal_places=2, default=0, help_text="In the billing currency"
    )
    spotlight = models.ForeignKey(
        "Take", on_delete=models.SET_NULL, null=True, blank=True, related_name="+", help_text="On /screen"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name


class Announcement(models.Model):
    """A banner on every filmmaker's page until it is withdrawn."""

    workshop = models.ForeignKey(Workshop, on_delete=models.CASCADE, related_name="announcements", null=True)
    text = models.CharField(max_length=500)
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.text[:60]


class Round(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        OPEN = "open", "Open"
        PAUSED = "paused", "Paused"
        CLOSED = "closed", "Closed"

    title = models.CharField(max_length=160)
    brief = models.TextField(blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.DRAFT, db_index=True)
    quota = models.PositiveIntegerField(default=15, help_text="Generations per filmmaker in this round")
    circle_limit = models.PositiveIntegerField(default=3, help_text="Circled takes per filmmaker")
    templates = models.ManyToManyField(WorkflowTemplate, related_name="rounds")
    workshop = models.ForeignKey(
        Workshop, on_delete=models.SET_NULL, null=True, blank=True, related_name="rounds"
    )
    gallery_shared = models.BooleanField(
        default=False, help_text="Everyone sees the round's circled takes (always once it is closed)"
    )
    # Whom the round expects (empty: every active filmmaker); the burst reservation waits for them.
    filmmakers = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="enrolled_rounds")
    burst_opened_at = models.DateTimeField(
        null=True, blank=True, help_text="When the last burst window opened"
    )
    burst_closed_at = models.DateTimeField(null=True, blank=True, help_text="When it was closed early")
    created_at = models.DateTimeField(auto_now_add=True)
    opened_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.title


class Generation(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        DISPATCHED = "dispatched", "Dispatched"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    IN_FLIGHT = (Status.DISPATCHED, Status.RUNNING)
    TERMINAL = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="generations")
    round = models.ForeignKey(Round, on_delete=models.PROTECT, related_name="generations")
    template = models.ForeignKey(WorkflowTemplate, on_delete=models.PROTECT, related_name="generations")
    params = models.JSONField(help_text="The validated user-facing parameters")
    workflow = models.JSONField(help_text="The resolved workflow sent to the worker")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    priority = models.BooleanField(default=False, help_text="Submitted by an instructor: runs first")
    requeued = models.BooleanField(
        default=False, help_text="Queued again after a lost or failed attempt: goes first in its priority"
    )
    # One per form render: a double click or a retried POST finds the first generation.
    submit_token = models.UUIDField(null=True, blank=True, unique=True)
    # From the failed event: a retriable (system) failure can be retried and does not count to quota.
    retriable = models.BooleanField(null=True, blank=True)
    # Bumped on every dispatch; events and uploads of an older attempt are ignored.
    attempt = models.PositiveIntegerField(default=0)
    worker = models.CharField(max_length=120, blank=True)
    # The enrolled host holding the current attempt: bound by its first "started"; events and uploads
    # of this attempt from any other credential are refused. Reset with every new attempt.
    host = models.ForeignKey("GpuHost", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    progress = models.FloatField(default=0)
    progress_message = models.CharField(max_length=200, blank=True)
    error_message = models.TextField(blank=True, help_text="Shown to the filmmaker")
    error_detail = models.TextField(blank=True, help_text="For admins only")
    created_at = models.DateTimeField(auto_now_add=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "created_at"]),
            models.Index(fields=["round", "owner"]),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.prompt[:40]}"

    @property
    def prompt(self) -> str:
        return str(self.params.get("prompt", ""))

    @property
    def is_active(self) -> bool:
        return self.status not in self.TERMINAL

    def current_takes(self) -> list[Take]:
        """Takes of the attempt that succeeded (an earlier attempt's partial uploads don't count)."""
        return [t for t in self.takes.all() if t.attempt == self.attempt]

    def card_takes(self) -> list[Take]:
        """What its job card shows: only a succeeded generation shows takes (no query for the others,
        which a burst renders by the hundred)."""
        return self.current_takes() if self.status == self.Status.SUCCEEDED else []


class QuotaTopUp(models.Model):
    """Extra generations an instructor granted one filmmaker in one round."""

    round = models.ForeignKey(Round, on_delete=models.CASCADE, related_name="top_ups")
    filmmaker = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="top_ups")
    amount = models.PositiveIntegerField()
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"+{self.amount} for {self.filmmaker} in {self.round}"


class GpuHost(models.Model):
    """An enrolled GPU host (or serverless endpoint): a tenant with one Redis ACL user that may take
    our jobs, report on the attempts it holds and upload their outputs, and nothing else. The
    secret is shown once and stored as its SHA-256 (which Redis ACLs accept as ``#<hash>``)."""

    class Kind(models.TextChoices):
        VERDA_INSTANCE = "verda-instance", "Verda instance"
        VERDA_SERVERLESS = "verda-serverless", "Verda serverless"
        RUNPOD = "runpod-serverless", "RunPod serverless"
        KUBERNETES = "kubernetes", "Kubernetes secret"
        LOCAL = "local", "Local"

    name = models.SlugField(max_length=40, unique=True, help_text="Lower-case letters, digits and hyphens")
    username = models.CharField(max_length=60, unique=True, help_text="Its Redis ACL user")
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.VERDA_INSTANCE)
    secret_sha256 = models.CharField(max_length=64)
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["name"]
        verbose_name = "GPU host"

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class SecurityEvent(models.Model):
    """Something a GPU host sent that crossed its boundary and was refused; repeats within a minute
    add to ``count`` instead of a new row (a host must not be able to flood the table)."""

    class Kind(models.TextChoices):
        FOREIGN_EVENT = "foreign-event", "Event for an attempt another host holds"
        FOREIGN_UPLOAD = "foreign-upload", "Upload for an attempt another host holds"
        BAD_CREDENTIAL = "bad-credential", "Upload with a missing, wrong or revoked credential"
        INVALID_EVENT = "invalid-event", "Event that failed validation"
        REFUSED_JOB = "refused-job", "Job a worker refused (not ours, unsigned, altered or expired)"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    host = models.ForeignKey(GpuHost, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    generation_id = models.PositiveBigIntegerField(null=True, blank=True)
    attempt = models.PositiveIntegerField(null=True, blank=True)
    detail = models.CharField(max_length=500, blank=True)
    count = models.PositiveIntegerField(default=1)
    first_at = models.DateTimeField(auto_now_add=True)
    last_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-last_at"]

    def __str__(self) -> str:
        return f"{self.kind} ×{self.count}"


class Worker(models.Model):
    """A GPU worker as its heartbeats describe it, kept after it leaves so spend adds up."""

    name = models.CharField(max_length=120, unique=True)
    provider = models.CharField(
        max_length=40, blank=True, help_text="verda-instance, runpod-serverless, local..."
    )
    price_per_hour = models.DecimalField(max_digits=8, decimal_places=4, default=0)
    billing_seconds = models.PositiveIntegerField(default=1, help_text="Billing granularity")
    gpu = models.CharField(max_length=120, blank=True)
    vram_gb = models.FloatField(null=True, blank=True)
    queues = models.CharField(max_length=200, blank=True)
    templates = models.CharField(
        max_length=500, blank=True, help_text="Template slugs it can run (blank: any)"
    )
    state = models.CharField(max_length=12, blank=True)
    current_generation = models.ForeignKey(
        Generation, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    online_seconds = models.FloatField(default=0, help_text="Sum of the heartbeat intervals seen")
    busy_seconds = models.FloatField(default=0)
    host = models.ForeignKey(
        GpuHost, on_delete=models.SET_NULL, null=True, blank=True, related_name="workers"
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


def take_upload_to(instance: Take, filename: str) -> str:
    name = PurePosixPath(filename).name
    return f"takes/r{instance.generation.round_id}/g{instance.generation_id}/a{instance.attempt}/{name}"


class Take(models.Model):
    """One output file of a generation."""

    class Kind(models.TextChoices):
        VIDEO = "video", "Video"
        IMAGE = "image", "Image"
        AUDIO = "audio", "Audio"
        OTHER = "other", "Other"

    generation = models.ForeignKey(Generation, on_delete=models.CASCADE, related_name="takes")
    attempt = models.PositiveIntegerField()
    filename = models.CharField(max_length=200)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    content_type = models.CharField(max_length=100)
    file = models.FileField(upload_to=take_upload_to, max_length=300)
    size = models.PositiveBigIntegerField(default=0)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    duration = models.FloatField(null=True, blank=True, help_text="Seconds")
    frame_count = models.PositiveIntegerField(null=True, blank=True)
    poster = models.FileField(upload_to=take_upload_to, max_length=300, blank=True)
    thumbnail = models.FileField(upload_to=take_upload_to, max_length=300, blank=True)
    circled = models.BooleanField(default=False)
    note = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["generation", "attempt", "filename"], name="take_unique_per_attempt"
            )
        ]

    def __str__(self) -> str:
        return self.filename
