import tempfile
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from analysis_app import services
from analysis_app.engine_process import run_engine
from analysis_app.forms import MAX_TOP


class Command(BaseCommand):
    help = (
        "Analyse an optimisation result (the same engine, in a process of its own, as the "
        "Analyses page): re-simulate its best individuals and write the analysis folder."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "result",
            help=services.RESULT_FORMS,
        )
        parser.add_argument("-o", "--output", required=True, help="the analysis folder to write")
        parser.add_argument("--top", type=int, default=1, help="individuals to simulate")
        parser.add_argument("--checkpoint", help="checkpoint file name in checkpoints/")
        parser.add_argument(
            "--timeout",
            type=float,
            default=None,
            help="seconds (default: ANALYSIS_TIMEOUT_SECONDS)",
        )

    def handle(self, *args, result, output, top, checkpoint, timeout, **options):
        if not 1 <= top <= MAX_TOP:
            raise CommandError(f"--top must be between 1 and {MAX_TOP}.")
        out_dir = Path(output).resolve()
        if (out_dir / "analysis.json").exists():
            raise CommandError(f"{out_dir} already holds an analysis; choose a new folder.")
        # Under ANALYSIS_WORK_DIR, like the site's analyses: never the system's temporary
        # folder, which a result that unpacks to gigabytes would fill for everyone.
        settings.ANALYSIS_WORK_DIR.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(
            prefix="analyse-", dir=settings.ANALYSIS_WORK_DIR
        ) as scratch:
            source = self._source(result, Path(scratch))
            self.stdout.write(f"Analysing {source} …")
            last = {"message": None}

            def report(progress):
                message = (progress or {}).get("message")
                if message and message != last["message"]:
                    self.stdout.write(f"  {message}")
                    last["message"] = message

            outcome = run_engine(
                source=source,
                out_dir=out_dir,
                progress_file=Path(scratch) / "progress.json",
                mechanisms_cache=settings.MECHANISMS_CACHE_DIR,
                timeout=timeout or settings.ANALYSIS_TIMEOUT_SECONDS,
                top=top,
                checkpoint=checkpoint,
                work_dir=Path(scratch),
                max_unpacked_bytes=settings.ANALYSIS_UNPACKED_MAX_BYTES,
                on_progress=report,
                sandbox=settings.SANDBOX,
            )
        if not outcome.succeeded:
            error = outcome.error
            details = error.get("details") or {}
            for problem in details.get("problems") or []:
                self.stderr.write(f"  {problem}")
            if details.get("traceback"):
                self.stderr.write(details["traceback"])
            raise CommandError(f"The analysis failed ({error['kind']}): {error['message']}")
        self._summary(outcome)

    def _source(self, result: str, scratch: Path) -> Path:
        source = services.result_source(
            reference=result, folder=scratch / "source", announce=self.stdout.write
        )
        if source is None:
            raise CommandError(services.result_not_found(result))
        return source

    def _summary(self, outcome) -> None:
        analysis = outcome.analysis
        self.stdout.write(self.style.SUCCESS(f"Analysis of {analysis['model']['name']} written."))
        checkpoint = analysis["checkpoint"]
        self.stdout.write(
            f"Checkpoint: {checkpoint['name']} ({_CHOSEN_BY.get(checkpoint.get('chosen_by'), 'chosen')})"
        )
        surveyed = checkpoint.get("checkpoints") or []
        if len(surveyed) > 1:
            for row in surveyed:
                seed = "" if row["seed"] is None else f"seed {row['seed']}, "
                shown = _shown(row["fitness"]) if row["fitness"] is not None else row["error"]
                self.stdout.write(f"  {row['name']}: {seed}stored fitness {shown}")
        for individual in analysis["individuals"]:
            fitness = individual["fitness"]
            self.stdout.write(
                f"Fitness of {individual['label']}: stored {_shown(fitness['stored'])}, "
                f"recomputed {_shown(fitness['recomputed'])}"
            )
            if fitness["large_difference"]:
                self.stdout.write(self.style.WARNING(f"Warning: {fitness['note']}"))
        for warning in analysis.get("warnings") or []:
            if not any(warning == i["fitness"]["note"] for i in analysis["individuals"]):
                self.stdout.write(self.style.WARNING(f"Warning: {warning}"))
        out = outcome.out_dir
        self.stdout.write(f"Files in {out}:")
        self.stdout.write(f"  {out / 'analysis.json'}")
        for individual in analysis["individuals"]:
            if individual["hoc_file"]:
                self.stdout.write(
                    f"  {out / individual['hoc_file']}  (the {individual['label']} cell)"
                )
            self.stdout.write(f"  {out / 'traces' / individual['label']}/  (traces, CSV)")


_CHOSEN_BY = {
    "name": "as asked",
    "best_run": "the catalogue's best run",
    "only": "the only one",
    "fitness": "the best stored fitness",
}


def _shown(value) -> str:
    return "unknown" if value is None else f"{value:.4f}"
