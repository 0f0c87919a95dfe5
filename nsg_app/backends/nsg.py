"""NSG: submission, the account's job list, results, cancel; through nsg_app.nsg's client.

Only talks to NSG: what a reply means for the job rows is the services' business
(nsg_app.polling applies the statuses, nsg_app.services queues what follows).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterable

from django.conf import settings
from django.utils import timezone

from nsg_app.collection import ResultSource
from nsg_app.job_package import write_job_package
from nsg_app.models import Job, NsgAccount
from nsg_app.nsg import (
    CommunicationError,
    JobStatus,
    NotFound,
    NsgClient,
    NsgError,
    RetryPolicy,
    ServerError,
    ValidationError,
)
from nsg_app.stages import stage_record

ENTRY_SCRIPT = "init.py"
# Our jobs carry "rebuild-<job id>" as NSG's clientJobId, so a lost reply is found again.
CLIENT_JOB_PREFIX = "rebuild-"


# A person waits on calls made from a page: fail fast there. The worker retries a little
# longer, but leaves long waits (a 429 asking for a minute) to the poll's own back-off,
# so that no worker process sleeps on one account.
INTERACTIVE_RETRY = RetryPolicy(attempts=2, base_delay_seconds=0.5, max_delay_seconds=2)
WORKER_RETRY = RetryPolicy(attempts=3, base_delay_seconds=1, max_delay_seconds=10)


def nsg_client(username: str, password: str, *, interactive: bool = False) -> NsgClient:
    return NsgClient(
        settings.NSG_BASE_URL,
        settings.NSG_APP_KEY,
        username,
        password,
        verify=settings.NSG_VERIFY_TLS,
        retry=INTERACTIVE_RETRY if interactive else WORKER_RETRY,
    )


def client_for(account: NsgAccount) -> NsgClient:
    return nsg_client(account.username, account.password())


def account_statuses(account: NsgAccount) -> list[JobStatus]:
    """Every job NSG holds for the account, with its full status: one request."""
    with client_for(account) as client:
        return client.list_jobs()


def client_job_id(job: Job) -> str:
    return f"{CLIENT_JOB_PREFIX}{job.pk}"


def submission_fields(job: Job) -> dict:
    return {
        "vparams": {
            "filename_": ENTRY_SCRIPT,
            "number_nodes_": job.nodes,
            "number_cores_": job.cores_per_node,
            "runtime_": job.runtime_hours,
        },
        "metadata": {
            "clientJobId": client_job_id(job),
            "clientJobName": job.folder,
            "statusEmail": "false",
        },
    }


class NsgBackend:
    name = Job.Backend.NSG

    def submit(self, job: Job, *, retry: bool = False) -> JobStatus | None:
        """Send the job to NSG; NSG's first status of the job once accepted, for the
        services to record (None: refused, or cancelled meanwhile). ``retry``: an earlier
        attempt may have reached NSG before its worker stopped, so NSG's job list is looked
        at first (never submitted twice)."""
        account = NsgAccount.objects.filter(owner=job.owner).first()
        if account is None:
            _submit_failed(job, "No NSG account: log in to NSG first.")
            return None
        with client_for(account) as client:
            status = _find_by_client_id(client, client_job_id(job)) if retry else None
            if status is None:
                status = self._send(job, client)
            if status is None:
                return None
            accepted = Job.objects.filter(pk=job.pk, state=Job.State.SUBMITTING).update(
                handle=status.handle, state=Job.State.ACTIVE, heartbeat_at=None
            )
            if not accepted:
                # Cancelled while NSG was accepting it: delete it there too.
                Job.objects.filter(pk=job.pk).update(handle=status.handle)
                with contextlib.suppress(NsgError):
                    client.delete_job(status.handle)
                return None
        job.refresh_from_db()
        return status

    def _send(self, job: Job, client: NsgClient) -> JobStatus | None:
        with tempfile.TemporaryFile() as package:
            write_job_package(job, package)
            package.seek(0)
            try:
                return client.submit(
                    job.tool,
                    package,
                    input_filename=f"{job.package.run_name}.zip",
                    **submission_fields(job),
                )
            except ValidationError as error:
                Job.objects.filter(pk=job.pk).update(param_errors=dict(error.param_errors))
                _submit_failed(
                    job, f"NSG refused the job: {error.display_message or error.message}"
                )
            except (CommunicationError, ServerError) as error:
                # The job may exist even though the reply was lost: look before saying no.
                status = _find_by_client_id(client, client_job_id(job))
                if status is not None:
                    return status
                _submit_failed(
                    job,
                    f"NSG could not be reached ({error.display_message or error}); "
                    "submit again later.",
                )
            except NsgError as error:
                _submit_failed(job, f"NSG refused the job: {error.display_message or error}")
        return None

    def result_sources(self, job: Job) -> Iterable[ResultSource]:
        account = NsgAccount.objects.get(owner=job.owner)
        client = client_for(account)
        files = client.list_results(job.handle)

        def writer(job_file):
            return lambda destination: client.download(job_file, destination)

        try:
            for job_file in sorted(files, key=lambda f: f.filename):
                yield ResultSource(job_file.filename, job_file.length, writer(job_file))
        finally:
            client.close()

    def cancel(self, job: Job) -> None:
        Job.objects.filter(pk=job.pk).update(cancel_requested_at=timezone.now())
        if not job.handle:
            # Not accepted by NSG yet: it is never sent now, and a submission already on
            # its way deletes what NSG accepted (see submit).
            Job.objects.filter(pk=job.pk, state__in=Job.ACTIVE_STATES).update(
                state=Job.State.CANCELLED, stage="CANCELLED"
            )
            stage_record(job, "CANCELLED", message="Cancelled before NSG accepted it.")
            job.refresh_from_db()
            return
        account = NsgAccount.objects.filter(owner=job.owner).first()
        if account is None:
            raise NsgError("No NSG credentials are stored: log in to NSG again to cancel it there.")
        with client_for(account) as client:
            try:
                client.delete_job(job.handle)
            except NotFound:
                pass  # already gone at NSG: nothing left to stop
        stage_record(job, "CANCELLED", message="Cancelled and deleted at NSG by the user.")
        Job.objects.filter(pk=job.pk, state__in=Job.ACTIVE_STATES).update(state=Job.State.CANCELLED)
        job.refresh_from_db()


def _submit_failed(job: Job, reason: str) -> None:
    Job.objects.filter(pk=job.pk, state=Job.State.SUBMITTING).update(
        state=Job.State.SUBMIT_FAILED, error=reason, heartbeat_at=None
    )
    job.refresh_from_db()


def _find_by_client_id(client: NsgClient, wanted: str) -> JobStatus | None:
    try:
        return next((s for s in client.list_jobs() if s.client_job_id == wanted), None)
    except NsgError:
        return None
