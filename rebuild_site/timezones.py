"""One time zone for every time a user sees: the browser's own, named on the page.

The browser reports its IANA zone in a cookie (a line of script in the base layout); this
middleware activates it for the request, so server-rendered times and the times in JSON
status replies (formatted here, not by the browser's locale) agree, each labelled with the
zone. Before the browser has told us, and for a name that is not a real zone, the site's
TIME_ZONE is used.
"""

from __future__ import annotations

import zoneinfo
from datetime import datetime

from django.utils import dateformat, timezone

COOKIE = "tz"
# Server-rendered and JSON times alike; "T" names the zone (CET, UTC, EST ...).
SHOWN = "Y-m-d H:i:s T"


def zone_from_cookie(value: str | None) -> zoneinfo.ZoneInfo | None:
    if not value or len(value) > 64 or not value.isascii():
        return None
    try:
        return zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return None


class UserTimezoneMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        zone = zone_from_cookie(request.COOKIES.get(COOKIE))
        if zone is not None:
            timezone.activate(zone)
        else:
            timezone.deactivate()
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()


def shown(moment: datetime | None) -> str:
    """``moment`` in the active zone, as every page shows times."""
    if moment is None:
        return ""
    return dateformat.format(timezone.localtime(moment), SHOWN)
