import argparse

from django.conf import settings
from django.core.management.base import BaseCommand

from nsg_app.backends.local import local_cores
from nsg_app.local.cli import add_arguments, run_from_arguments


class Command(BaseCommand):
    help = "Run a run package on this machine, synchronously, with a progress bar (the local backend's code)."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_arguments(parser)

    def handle(self, *args, **options) -> None:
        namespace = argparse.Namespace(**options)
        namespace.cores = namespace.cores or local_cores()
        namespace.mechanisms_cache = namespace.mechanisms_cache or settings.MECHANISMS_CACHE_DIR
        namespace.sandbox = namespace.sandbox or settings.SANDBOX
        namespace.cluster = namespace.cluster or settings.LOCAL_CLUSTER
        code = run_from_arguments(namespace, stream=self.stdout._out)
        if code:
            raise SystemExit(code)
