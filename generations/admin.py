from __future__ import annotations

from django.contrib import admin

from .models import Generation, QuotaTopUp, Round, Take, WorkflowTemplate


@admin.register(WorkflowTemplate)
class WorkflowTemplateAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "kind", "queue", "estimated_seconds", "requirements")
    list_filter = ("kind", "queue")
    search_fields = ("name", "slug", "description")
    prepopulated_fields = {"slug": ("name",)}


@admin.register(Round)
class RoundAdmin(admin.ModelAdmin):
    list_display = ("title", "status", "quota", "circle_limit", "created_at", "opened_at")
    list_filter = ("status", "templates")
    search_fields = ("title", "brief")
    filter_horizontal = ("templates",)


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
    list_filter = ("status", "round", "template", "worker")
    search_fields = ("id", "owner__username", "params__prompt", "error_message", "worker")
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
