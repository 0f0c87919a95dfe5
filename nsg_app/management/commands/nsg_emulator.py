"""`manage.py nsg_emulator --user alice:secret --appkey KEY ...`: the NSG emulator.

The same options as `python -m nsg_app.emulator`; this command only forwards them.
"""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from nsg_app.emulator.__main__ import add_arguments, config_from_options, serve


class Command(BaseCommand):
    help = "Run the local NSG emulator (docs/nsg-protocol.md) until interrupted."

    def add_arguments(self, parser):
        add_arguments(parser)

    def handle(self, *args, **options):
        options["sandbox"] = options.get("sandbox") or settings.SANDBOX
        try:
            config = config_from_options(options)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        serve(config, verbose=options["verbose"])
