from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from models_app.bpo.package import DEFAULT_MAX_NGEN, DEFAULT_OFFSPRING_SIZE, InvalidPackageRequest
from models_app.models import Optimisation, ParameterSet
from models_app.services import package_write


class Command(BaseCommand):
    help = "Build the run package zip of a catalogue model (the same code as 'Create zip file')."

    def add_arguments(self, parser):
        parser.add_argument("model", help="the model's name or id")
        parser.add_argument("--parameters", type=int, help="id of a saved parameters version")
        parser.add_argument("--offspring", type=int, default=DEFAULT_OFFSPRING_SIZE)
        parser.add_argument("--generations", type=int, default=DEFAULT_MAX_NGEN)
        parser.add_argument("-o", "--output", required=True, help="the zip file to write")

    def handle(self, *args, model, parameters, offspring, generations, output, **options):
        matches = (
            Optimisation.objects.filter(pk=int(model))
            if model.isdigit()
            else Optimisation.objects.filter(name=model)
        )
        if not matches:
            raise CommandError(f"No model {model!r} in the catalogue.")
        if len(matches) > 1:
            raise CommandError(
                f"Several models are named {model!r}; give its id: {', '.join(str(m.pk) for m in matches)}."
            )
        optimisation = matches[0]
        parameter_set = None
        if parameters is not None:
            parameter_set = ParameterSet.objects.filter(
                pk=parameters, optimisation=optimisation
            ).first()
            if parameter_set is None:
                raise CommandError(f"No parameters version {parameters} of {optimisation.name}.")
        try:
            result = package_write(
                optimisation=optimisation,
                offspring_size=offspring,
                max_ngen=generations,
                parameter_set=parameter_set,
                out=Path(output),
            )
        except InvalidPackageRequest as error:
            raise CommandError(str(error)) from None
        for warning in result.warnings:
            self.stderr.write(f"Warning: {warning}")
        for fix in result.fixes:
            self.stdout.write(f"Fixed {fix.file}: {fix.description}")
        self.stdout.write(
            f"{output}: {result.run_name} ({result.size} bytes, sha256 {result.sha256})"
        )
