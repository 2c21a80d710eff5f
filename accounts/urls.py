from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("", views.account_list, name="accounts-list"),
    path("create", views.accounts_create, name="accounts-create"),
    path("<int:pk>/reset", views.account_reset, name="accounts-reset"),
    path("<int:pk>/deactivate", views.account_deactivate, name="accounts-deactivate"),
    path("<int:pk>/activate", views.account_activate, name="accounts-activate"),
    path("unlock", views.account_unlock, name="accounts-unlock"),
]
