import tempfile
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from analysis_app.services import RESULT_FORMS, result_not_found, result_source
from models_app.bpo.continuation import RESUME_NOTE, CannotContinue
from models_app.bpo.package import DEFAULT_MAX_NGEN, DEFAULT_OFFSPRING_SIZE, InvalidPackageRequest
from models_app.models import Optimisation, ParameterSet
from models_app.services import package_continue_write, package_write


class Command(BaseCommand):
    help = "Build the run package zip of a catalogue model (the same code as 'Create zip file')."

    def add_arguments(self, parser):
        parser.add_argument("model", help="the model's name or id")
        parser.add_argument("--parameters", type=int, help="id of a saved parameters version")
        parser.add_argument(
            "--offspring", type=int, help=f"offspring size (default {DEFAULT_OFFSPRING_SIZE})"
        )
        parser.add_argument(
            "--generations",
            type=int,
            help=f"maximum of generations, the total (default {DEFAULT_MAX_NGEN}; with "
            "--continue, required and more than the checkpoint's generation)",
        )
        parser.add_argument(
            "--continue",
            dest="continue_from",
            metavar="RESULT",
            help=f"continue this run of MODEL from its checkpoint; RESULT: {RESULT_FORMS}, "
            "or a catalogue model's folder",
        )
        parser.add_argument(
            "--checkpoint", help="with --continue: the checkpoint file name in checkpoints/"
        )
        parser.add_argument("-o", "--output", required=True, help="the zip file to write")

    def handle(
        self,
        *args,
        model,
        parameters,
        offspring,
        generations,
        continue_from,
        checkpoint,
        output,
        **options,
    ):
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
        if continue_from is not None:
            if parameters is not None or offspring is not None:
                raise CommandError(
                    "--continue keeps the run's own bounds and offspring size: leave out "
                    "--parameters and --offspring."
                )
            if generations is None:
                raise CommandError("--continue needs --generations (the new total).")
            self._continue(optimisation, continue_from, checkpoint, generations, Path(output))
            return
        if checkpoint is not None:
            raise CommandError("--checkpoint goes with --continue.")
        offspring = DEFAULT_OFFSPRING_SIZE if offspring is None else offspring
        generations = DEFAULT_MAX_NGEN if generations is None else generations
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
        self._report(result, output)

    def _continue(self, optimisation, reference, checkpoint, generations, output: Path) -> None:
        settings.ANALYSIS_WORK_DIR.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(
            prefix="continue-", dir=settings.ANALYSIS_WORK_DIR
        ) as scratch:
            source = result_source(
                reference=reference, folder=Path(scratch), announce=self.stdout.write
            )
            if source is None:
                raise CommandError(result_not_found(reference))
            try:
                result = package_continue_write(
                    optimisation=optimisation,
                    source=source,
                    source_label=reference,
                    max_ngen=generations,
                    out=output,
                    checkpoint_name=checkpoint,
                )
            except (CannotContinue, InvalidPackageRequest) as error:
                raise CommandError(str(error)) from None
        continued = result.manifest["continued_from"]
        self.stdout.write(
            f"Continues {continued['checkpoint']} of {reference}: generation "
            f"{continued['generation']}, offspring size {continued['offspring_size']}, "
            f"up to generation {generations} with {continued['resume_flag']}."
        )
        self.stdout.write(RESUME_NOTE)
        self._report(result, str(output))

    def _report(self, result, output: str) -> None:
        for warning in result.warnings:
            self.stderr.write(f"Warning: {warning}")
        for fix in result.fixes:
            self.stdout.write(f"Fixed {fix.file}: {fix.description}")
        self.stdout.write(
            f"{output}: {result.run_name} ({result.size} bytes, sha256 {result.sha256})"
        )
