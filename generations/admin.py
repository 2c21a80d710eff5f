from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Field
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from generations.authoring.import_forms import ImportMapping, UploadForm
from generations.authoring.importer import WorkflowImportError, propose, workflow_parse
from generations.fleet import hosts
from generations.fleet.costs import worker_spend
from generations.models import (
    Announcement,
    Generation,
    GpuHost,
    QuotaTopUp,
    Round,
    SecurityEvent,
    Take,
    Worker,
    WorkflowTemplate,
    Workshop,
)


@admin.register(WorkflowTemplate)
class WorkflowTemplateAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "kind", "queue", "estimated_seconds", "requirements")
    list_filter = ("kind", "queue")
    search_fields = ("name", "slug", "description", "requirements")
    prepopulated_fields = {"slug": ("name",)}
    fieldsets = (
        (None, {"fields": ("name", "slug", "kind", "description")}),
        (
            "GPU worker",
            {
                "fields": ("requirements", "queue", "estimated_seconds", "timeout_seconds"),
                "description": "A worker can run this template only if it has what “requirements” names.",
            },
        ),
        ("Workflow (ComfyUI API format) and its fields", {"fields": ("workflow", "param_spec")}),
    )

    def formfield_for_dbfield(
        self, db_field: Field, request: HttpRequest, **kwargs: Any
    ) -> forms.Field | None:
        if db_field.name == "requirements":
            kwargs["widget"] = forms.Textarea(attrs={"rows": 3, "cols": 80})
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.import_view)
        return [path("import/", view, name="generations_workflowtemplate_import"), *super().get_urls()]

    def import_view(self, request: HttpRequest) -> HttpResponse:
        """Upload an API-format workflow, then confirm (and edit) the proposed fields."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Import a ComfyUI workflow",
        }
        template = "admin/generations/workflowtemplate/import.html"
        if request.method == "POST" and "workflow" in request.POST:
            try:
                workflow = workflow_parse(request.POST["workflow"])
            except WorkflowImportError as exc:
                messages.error(request, str(exc))
                return HttpResponseRedirect(request.path)
            mapping = ImportMapping(workflow, data=request.POST)
            created = mapping.save()
            if created is None:
                return TemplateResponse(request, template, {**context, "mapping": mapping})
            self.log_addition(request, created, [{"added": {}}])
            messages.success(request, f"Imported “{created}” with {len(created.param_spec)} fields.")
            return HttpResponseRedirect(
                reverse("admin:generations_workflowtemplate_change", args=[created.pk])
            )
        upload = UploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and upload.is_valid():
            workflow = upload.cleaned_data["workflow"]
            name = upload.cleaned_data["file"].name
            mapping = ImportMapping(workflow, proposal=propose(workflow), filename=name)
            return TemplateResponse(request, template, {**context, "mapping": mapping})
        return TemplateResponse(request, template, {**context, "upload": upload})


@admin.register(Round)
class RoundAdmin(admin.ModelAdmin):
    list_display = ("title", "status", "quota", "circle_limit", "gallery_shared", "created_at", "opened_at")
    list_filter = ("status", "gallery_shared", "templates")
    search_fields = ("title", "brief")
    filter_horizontal = ("templates", "filmmakers")


class TakeInline(admin.TabularInline):
    model = Take
    extra = 0
    fields = ("filename", "attempt", "kind", "content_type", "size", "width", "height", "duration", "circled")
    readonly_fields = fields


@admin.register(Generation)
class GenerationAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "owner",
        "round",
        "template",
        "status",
        "attempt",
        "progress",
        "worker",
        "created_at",
    )
    list_filter = ("status", "requeued", "round", "template", "worker")
    search_fields = ("id", "owner__username", "params__prompt", "error_message", "error_detail", "worker")
    list_select_related = ("owner", "round", "template")
    date_hierarchy = "created_at"
    readonly_fields = ("created_at", "dispatched_at", "started_at", "finished_at")
    inlines = [TakeInline]


@admin.register(Take)
class TakeAdmin(admin.ModelAdmin):
    list_display = ("id", "filename", "generation", "kind", "size", "width", "height", "duration", "circled")
    list_filter = ("kind", "circled", "generation__round")
    search_fields = ("filename", "note", "generation__owner__username", "generation__params__prompt")
    list_select_related = ("generation",)


@admin.register(QuotaTopUp)
class QuotaTopUpAdmin(admin.ModelAdmin):
    list_display = ("filmmaker", "round", "amount", "granted_by", "created_at")
    list_filter = ("round",)
    search_fields = ("filmmaker__username",)
    list_select_related = ("filmmaker", "round", "granted_by")


@admin.register(Workshop)
class WorkshopAdmin(admin.ModelAdmin):
    list_display = ("name", "date", "gpu_budget", "spotlight")
    search_fields = ("name",)
    raw_id_fields = ("spotlight",)


@admin.register(Announcement)
class AnnouncementAdmin(admin.ModelAdmin):
    list_display = ("text", "active", "created_by", "created_at")
    list_filter = ("active",)
    search_fields = ("text",)


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "host",
        "provider",
        "gpu",
        "state",
        "current_generation",
        "price_per_hour",
        "last_seen",
        "spend",
    )
    list_filter = ("provider", "state", "gpu", "host")
    search_fields = ("name", "gpu")
    readonly_fields = ("first_seen", "last_seen", "online_seconds", "busy_seconds")

    @admin.display(description="Spend so far")
    def spend(self, obj: Worker) -> str:
        return f"{worker_spend(obj):.2f}"


class HostAddForm(forms.ModelForm):
    class Meta:
        model = GpuHost
        fields = ("name", "kind", "note")


@admin.register(GpuHost)
class GpuHostAdmin(admin.ModelAdmin):
    """Add a GPU host: its Redis user is created and its environment shown once. Revoke: at once."""

    list_display = ("name", "kind", "username", "created_at", "revoked_at")
    list_filter = ("kind", "revoked_at")
    search_fields = ("name", "username", "note")
    readonly_fields = ("username", "secret_sha256", "created_at", "created_by", "revoked_at", "revoked_by")
    actions = ["revoke"]

    def get_form(self, request: HttpRequest, obj: GpuHost | None = None, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = HostAddForm
        return super().get_form(request, obj, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: GpuHost | None = None) -> Any:
        return ("name", "kind", *self.readonly_fields) if obj else ()

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        if request.method != "POST":
            return super().add_view(request, form_url, extra_context)
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = HostAddForm(request.POST)
        if form.is_valid():
            try:
                enrolment = hosts.host_enrol(**form.cleaned_data, by=request.user)
            except hosts.EnrolRefused as exc:
                form.add_error("name", str(exc))
            else:
                self.log_addition(request, enrolment.host, [{"added": {}}])
                context = {
                    **self.admin_site.each_context(request),
                    "opts": self.opts,
                    "title": f"{enrolment.host.name} is enrolled",
                    "enrolment": enrolment,
                }
                response = TemplateResponse(request, "admin/generations/gpuhost/enrolled.html", context)
                response["Cache-Control"] = "no-store"
                return response
        for error in form.errors.values():
            messages.error(request, " ".join(error))
        return HttpResponseRedirect(request.path)

    @admin.action(description="Revoke: close its connections, re-dispatch its jobs")
    def revoke(self, request: HttpRequest, queryset: Any) -> None:
        done = [h.name for h in queryset if hosts.host_revoke(host=h, by=request.user)]
        messages.success(request, f"Revoked: {', '.join(done) or 'none (already revoked)'}.")

    def has_delete_permission(self, request: HttpRequest, obj: GpuHost | None = None) -> bool:
        return False  # revoke instead: the record says who held which attempt


@admin.register(SecurityEvent)
class SecurityEventAdmin(admin.ModelAdmin):
    list_display = ("last_at", "kind", "host", "count", "generation_id", "attempt", "detail")
    list_filter = ("kind", "host")
    search_fields = ("detail",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
