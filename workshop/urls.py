from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

urlpatterns = [
    path("admin/django-rq/", include("django_rq.urls")),
    path("admin/", admin.site.urls),
    # Log in and out only: no password reset by mail (the workshop sends none). A filmmaker who
    # lost a password asks the instructor, whose accounts page prints a new card.
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("instructor/accounts/", include("accounts.urls")),
    path("", include("generations.urls")),
]
