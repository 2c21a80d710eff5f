from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from .models import User


@admin.register(User)
class WorkshopUserAdmin(UserAdmin):
    list_display = ("username", "first_name", "last_name", "role", "is_active", "is_staff", "last_login")
    list_filter = ("role", "is_active", "is_staff", "is_superuser")
    search_fields = ("username", "first_name", "last_name", "email")
    fieldsets = (*UserAdmin.fieldsets, ("Workshop", {"fields": ("role",)}))
    add_fieldsets = (*UserAdmin.add_fieldsets, ("Workshop", {"fields": ("role",)}))
