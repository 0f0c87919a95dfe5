"""Access rules shared by every app's views."""

from __future__ import annotations

from functools import wraps

from django.core.exceptions import PermissionDenied


def staff_required(view):
    """Logged-in staff only; other logged-in users get 403 (login is already required)."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_staff:
            raise PermissionDenied("Staff only.")
        return view(request, *args, **kwargs)

    return wrapper


def visible_to(queryset, user, owner_field: str = "owner"):
    """Rows a user may see: their own, and every row for staff."""
    if user.is_staff:
        return queryset
    return queryset.filter(**{owner_field: user})
