"""The one refusal of a delete (a job, an analysis, an upload). Each app's service decides
what a delete removes and when it is refused; the page flow is
``rebuild_site.views.confirm_delete``."""

from __future__ import annotations


class DeleteRefused(Exception):
    """Nothing was deleted; the message says why, for the user."""
