from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import user_passes_test
from django.urls import include, path
from django_rq.urls import get_admin_urlpatterns, get_api_urlpatterns

# django-rq's dashboard can requeue, delete and read every job: superusers only (instructors are
# staff, and its own views let any staff member in).
superusers_only = user_passes_test(lambda u: u.is_active and u.is_superuser, login_url="admin:login")
rq_dashboard = [*get_api_urlpatterns(), *get_admin_urlpatterns()]
for pattern in rq_dashboard:
    pattern.callback = superusers_only(pattern.callback)

urlpatterns = [
    path("admin/django-rq/", include((rq_dashboard, "django_rq"))),
    path("admin/", admin.site.urls),
    # Log in and out only: no password reset by mail (the workshop sends none). A filmmaker who
    # lost a password asks the instructor, whose accounts page prints a new card.
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("instructor/accounts/", include("accounts.urls")),
    path("", include("generations.urls")),
]
