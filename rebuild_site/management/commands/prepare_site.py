"""First-start preparation used by `make run`: the demo account and the demo model."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

DEMO_USERNAME = "demo"


class Command(BaseCommand):
    help = "With DEBUG on and no user yet, create a demo account; import the demo model once."

    def handle(self, *args, **options) -> None:
        self._demo_account()
        self._demo_model()

    def _demo_account(self) -> None:
        User = get_user_model()
        credentials = settings.VAR_DIR / "demo-credentials.txt"
        if settings.DEBUG and not User.objects.exists():
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser(DEMO_USERNAME, "", password)
            credentials.write_text(f"{DEMO_USERNAME}\n{password}\n")
            credentials.chmod(0o600)
        if settings.DEBUG and credentials.exists():
            username, password = credentials.read_text().split()[:2]
            if User.objects.filter(username=username).exists():
                self.stdout.write(f"Log in as {username} with password {password}")
                return
        self.stdout.write(
            "Log in with an account made by `python manage.py createsuperuser` "
            "(or by staff in the admin)."
        )

    def _demo_model(self) -> None:
        # Filled in by the catalogue: imports the shipped demo optimisation once.
        from models_app.demo_model import ensure_demo_model

        name = ensure_demo_model()
        if name:
            self.stdout.write(f"Demo model: {name}")
