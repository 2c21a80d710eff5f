from __future__ import annotations

from django.urls import path

from generations.gallery import views

urlpatterns = [
    path("gallery/", views.my_gallery, name="gallery"),
    path("gallery/compare", views.compare, name="gallery-compare"),
    path("gallery/circled.zip", views.circled_zip, name="gallery-zip"),
    path("gallery/contact-sheet", views.contact_sheet, name="gallery-contact-sheet"),
    path("gallery/generations.csv", views.generations_csv, name="gallery-csv"),
    # A take's URLs share this base, so a grid tile reverses one URL, not seven.
    path("gallery/takes/<int:pk>/", views.take_media, {"what": "file"}, name="gallery-take"),
    path("gallery/takes/<int:pk>/circle", views.take_circle, name="gallery-circle"),
    path("gallery/takes/<int:pk>/note", views.take_note, name="gallery-note"),
    path("gallery/takes/<int:pk>/remix", views.take_remix, name="gallery-remix"),
    path("gallery/takes/<int:pk>/download", views.take_download, name="gallery-download"),
    path("gallery/takes/<int:pk>/<str:what>", views.take_media, name="gallery-media"),
    path("rounds/<int:pk>/gallery/", views.round_gallery, name="round-gallery"),
]
