from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from models_app.models import Optimisation
from models_app.services import ImportFailed, optimisation_import


class Command(BaseCommand):
    help = "Import an optimisation from a URL, a zip or a folder, and print the new model's name."

    def add_arguments(self, parser):
        parser.add_argument(
            "source", help="http(s)/file URL of a zip, a .zip file or an optimisation folder"
        )
        parser.add_argument(
            "--owner", help="user name: a private model of this user (default: shared)"
        )
        parser.add_argument("--private", action="store_true", help="do not publish a shared model")
        parser.add_argument(
            "--replace", action="store_true", help="update a shared model of the same name"
        )

    def handle(self, *args, source, owner, private, replace, **options):
        user = None
        if owner:
            try:
                user = get_user_model().objects.get(username=owner)
            except get_user_model().DoesNotExist:
                raise CommandError(f"No user named {owner}.") from None
        try:
            outcome = optimisation_import(
                source=source,
                kind=Optimisation.Source.COMMAND,
                owner=user,
                published=user is None and not private,
                replace=replace,
            )
        except ImportFailed as error:
            raise CommandError(
                "\n".join([error.summary + ":"] + [f"- {p}" for p in error.problems])
            ) from None
        self.stdout.write(outcome.optimisation.name)
