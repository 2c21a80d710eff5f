"""The instructor's panel under /instructor/, the projector at /screen, and the brief's images."""

from __future__ import annotations

from django.urls import path

from generations.instructor import views as v

urlpatterns = [
    path("instructor/", v.panel, name="instructor-panel"),
    path("instructor/workshop", v.workshop_save, name="instructor-workshop"),
    path("instructor/rounds/new", v.round_create, name="instructor-round-new"),
    path("instructor/rounds/<int:pk>/edit", v.round_edit, name="instructor-round-edit"),
    path(
        "instructor/rounds/<int:pk>/images/<str:name>/delete",
        v.round_image_delete,
        name="instructor-round-image-delete",
    ),
    path("instructor/rounds/<int:pk>/open", v.round_open, name="instructor-round-open"),
    path("instructor/rounds/<int:pk>/pause", v.round_pause, name="instructor-round-pause"),
    path("instructor/rounds/<int:pk>/go", v.burst_go, name="instructor-burst-go"),
    path("instructor/warm", v.warm, name="instructor-warm"),
    path("instructor/rounds/<int:pk>/burst-close", v.burst_close, name="instructor-burst-close"),
    path("instructor/rounds/<int:pk>/close", v.round_close, name="instructor-round-close"),
    path("instructor/room", v.room_current, name="instructor-room-current"),
    path("instructor/rounds/<int:pk>/room", v.room, name="instructor-room"),
    path("instructor/rounds/<int:pk>/takes", v.takes, name="instructor-takes"),
    path("instructor/rounds/<int:pk>/top-up/<int:user_id>", v.quota_top_up, name="instructor-top-up"),
    path("instructor/rounds/<int:pk>/spotlight-next", v.spotlight_next, name="instructor-spotlight-next"),
    path("instructor/generations/<int:pk>/cancel", v.generation_cancel, name="instructor-cancel"),
    path("instructor/takes/<int:pk>/spotlight", v.spotlight_take, name="instructor-spotlight"),
    path("instructor/spotlight/clear", v.spotlight_clear, name="instructor-spotlight-clear"),
    path("instructor/announcements", v.announce, name="instructor-announce"),
    path(
        "instructor/announcements/<int:pk>/withdraw",
        v.announcement_withdraw,
        name="instructor-announcement-withdraw",
    ),
    path("instructor/exports", v.exports_page, name="instructor-exports"),
    path("instructor/exports/generations.csv", v.export_csv, name="instructor-export-csv"),
    path("instructor/exports/circled/<int:user_id>.zip", v.export_zip, name="instructor-export-zip"),
    path("screen", v.screen, name="screen"),
    # For filmmakers too: whoever may see the round.
    path("rounds/<int:pk>/brief/<str:name>", v.round_brief_image, name="round-brief-image"),
]
