from django.db import migrations, models


def separate_shared_folders(apps, schema_editor):
    """Before this, every run of a package took the package's name as its folder, and its
    results went to the same storage folder. Later runs keep their rows but get a name of
    their own; only the last job copied into a shared storage folder keeps it (its files
    are the ones there now), so no two jobs point at the same files."""
    Job = apps.get_model("nsg_app", "Job")
    seen: set[tuple[int, str]] = set()
    for job in Job.objects.order_by("created_at", "pk"):
        key = (job.owner_id, job.folder)
        if key in seen:
            job.folder = f"{job.folder}-{job.pk}"[:200]
            job.save(update_fields=["folder"])
        seen.add(key)
    kept: set[str] = set()
    for job in Job.objects.exclude(results_prefix="").order_by("-collected_at", "-pk"):
        if job.results_prefix in kept:
            job.results_prefix = ""
            job.save(update_fields=["results_prefix"])
        kept.add(job.results_prefix)


class Migration(migrations.Migration):
    dependencies = [
        ("nsg_app", "0002_job_cancel_requested_at"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="seed",
            field=models.PositiveBigIntegerField(
                blank=True, help_text="BLUEPYOPT_SEED of the run (None: not known).", null=True
            ),
        ),
        migrations.AlterField(
            model_name="job",
            name="folder",
            field=models.CharField(
                help_text="The run's name and results folder: the optimisation's name with the "
                "date-time the run was created, unique per user.",
                max_length=200,
            ),
        ),
        migrations.RunPython(separate_shared_folders, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="job",
            constraint=models.UniqueConstraint(
                fields=("owner", "folder"), name="unique_run_folder"
            ),
        ),
        migrations.AddConstraint(
            model_name="job",
            constraint=models.UniqueConstraint(
                condition=models.Q(("results_prefix", ""), _negated=True),
                fields=("results_prefix",),
                name="unique_results_prefix",
            ),
        ),
    ]
