"""Access rules shared by every app's views."""

from __future__ import annotations

from functools import wraps

from django.core.exceptions import PermissionDenied
from django.db import models


def staff_required(view):
    """Logged-in staff only; other logged-in users get 403 (login is already required)."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_staff:
            raise PermissionDenied("Staff only.")
        return view(request, *args, **kwargs)

    return wrapper


class OwnedQuerySet(models.QuerySet):
    """Rows that belong to a user: each user sees their own, staff see all."""

    def visible_to(self, user):
        return self if user.is_staff else self.filter(owner=user)
