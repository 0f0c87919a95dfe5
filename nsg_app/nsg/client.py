"""A client for the NSG (CIPRES) REST API, "cipresrest/v1", in DIRECT mode.

Only the first request of a chain is built from the base URL (`/job/{user}`, or a job's
URL from its handle); every later step follows the absolute URLs the server sent
(selfUri, resultsUri, workingDirUri, downloadUri), as NSG's own clients do.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

import requests

from .documents import (
    JobFile,
    JobStatus,
    Tool,
    parse_job_files,
    parse_job_list,
    parse_job_status,
    parse_tools,
    parse_validation,
)
from .errors import CommunicationError, DownloadIncomplete
from .transport import RetryPolicy, Timeouts, Transport

InputFile = bytes | os.PathLike | BinaryIO
ParamValue = str | int | float | bool | Iterable[str | int | float]

DOWNLOAD_CHUNK_BYTES = 1 << 16


class NsgClient:
    """One NSG account: `NsgClient(base_url, app_key, username, password)`.

    `base_url` is the service root, e.g. `https://nsgr.sdsc.edu:8443/cipresrest/v1`.
    Every method raises a subclass of NsgError on failure.
    """

    def __init__(
        self,
        base_url: str,
        app_key: str,
        username: str,
        password: str,
        *,
        verify: bool = True,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.transport = transport or Transport(
            app_key=app_key,
            username=username,
            password=password,
            verify=verify,
            timeouts=timeouts,
            retry=retry,
        )

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> NsgClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def jobs_url(self) -> str:
        return f"{self.base_url}/job/{quote(self.username, safe='')}"

    def list_jobs(self) -> list[JobStatus]:
        """All the account's jobs with their full status (one request, `expand=true`)."""
        response = self.transport.get(self.jobs_url, params={"expand": "true"})
        return parse_job_list(response.content)

    def submit(
        self,
        tool: str,
        input_file: InputFile,
        *,
        vparams: Mapping[str, ParamValue] | None = None,
        metadata: Mapping[str, str] | None = None,
        input_filename: str = "input.zip",
    ) -> JobStatus:
        """Submit a job; returns its first status (stage QUEUE).

        `vparams` use the tool's names with their trailing underscore and without the
        `vparam.` prefix (`{"runtime_": 0.5, "filename_": "init.py"}`); a list value is sent
        as repeated fields. `metadata` keys go without the `metadata.` prefix
        (`{"clientJobId": "..."}`). Never retried: a lost reply may still have created
        the job, so look for its clientJobId in `list_jobs()` before submitting again.
        """
        response = self._post_form(
            self.jobs_url, tool, input_file, vparams, metadata, input_filename
        )
        return parse_job_status(response.content)

    def validate(
        self,
        tool: str,
        input_file: InputFile,
        *,
        vparams: Mapping[str, ParamValue] | None = None,
        metadata: Mapping[str, str] | None = None,
        input_filename: str = "input.zip",
    ) -> str:
        """Check a submission without running it; returns the command line NSG would run."""
        url = f"{self.jobs_url}/validate"
        response = self._post_form(url, tool, input_file, vparams, metadata, input_filename)
        return parse_validation(response.content)

    def job_status(self, job: JobStatus | str) -> JobStatus:
        """The current status of a job, given its last status or its handle."""
        response = self.transport.get(self._job_url(job))
        return parse_job_status(response.content)

    def delete_job(self, job: JobStatus | str) -> None:
        """Cancel the job if it is queued or running, then delete it with its results."""
        self.transport.delete(self._job_url(job))

    def list_results(self, job: JobStatus | str) -> list[JobFile]:
        """The final result files (STDOUT, STDERR, output.tar.gz, ...) of a finished job."""
        status = self._status_with_links(job)
        response = self.transport.get(_required_link(status.results_url, "resultsUri"))
        return parse_job_files(response.content, "results")

    def list_working_dir(self, job: JobStatus | str) -> list[JobFile]:
        """The files of the job's live working directory (only while staged or running)."""
        status = self._status_with_links(job)
        response = self.transport.get(_required_link(status.working_dir_url, "workingDirUri"))
        return parse_job_files(response.content, "workingdir")

    def download(
        self,
        job_file: JobFile,
        destination: BinaryIO,
        *,
        check_length: bool = True,
        chunk_size: int = DOWNLOAD_CHUNK_BYTES,
    ) -> int:
        """Stream a result (or working-directory) file into `destination`; returns bytes written.

        The bytes are never decoded (NSG labels even output.tar.gz as text/plain). With
        `check_length`, a size different from the listing's `length` raises
        DownloadIncomplete; pass False for working-directory files that are still growing.
        """
        response = self.transport.get(job_file.download_url, stream=True)
        written = 0
        try:
            for chunk in response.iter_content(chunk_size=chunk_size):
                destination.write(chunk)
                written += len(chunk)
        except requests.RequestException as exc:
            raise CommunicationError(
                f"Download of {job_file.filename} broke off after {written} bytes: {exc}",
                display_message="Download from NSG failed.",
            ) from exc
        finally:
            response.close()
        if check_length and written != job_file.length:
            raise DownloadIncomplete(
                f"{job_file.filename}: received {written} bytes, NSG announced {job_file.length}.",
                display_message="Download from NSG was incomplete.",
            )
        return written

    def list_tools(self) -> list[Tool]:
        response = self.transport.get(f"{self.base_url}/tool")
        return parse_tools(response.content)

    def _job_url(self, job: JobStatus | str) -> str:
        if isinstance(job, JobStatus):
            return _required_link(job.self_url, "selfUri")
        if not job or "/" in job:
            raise ValueError(f"Not a job handle: {job!r}")
        return f"{self.jobs_url}/{quote(job, safe='')}"

    def _status_with_links(self, job: JobStatus | str) -> JobStatus:
        return job if isinstance(job, JobStatus) else self.job_status(job)

    def _post_form(
        self,
        url: str,
        tool: str,
        input_file: InputFile,
        vparams: Mapping[str, ParamValue] | None,
        metadata: Mapping[str, str] | None,
        input_filename: str,
    ) -> requests.Response:
        fields: list[tuple[str, str]] = [("tool", tool)]
        for name, value in (vparams or {}).items():
            if not name.endswith("_") or "." in name:
                raise ValueError(
                    f"vparam names are the tool's own, ending in '_', without prefix: {name!r}"
                )
            for item in _values(value):
                fields.append((f"vparam.{name}", item))
        for key, value in (metadata or {}).items():
            if "." in key:
                raise ValueError(f"metadata keys go without the 'metadata.' prefix: {key!r}")
            fields.append((f"metadata.{key}", str(value)))
        with _opened(input_file) as content:
            files = [("input.infile_", (input_filename, content, "application/zip"))]
            return self.transport.post(url, data=fields, files=files)


def _values(value: ParamValue) -> list[str]:
    if isinstance(value, bool):
        return ["1" if value else "0"]
    if isinstance(value, str | int | float):
        return [str(value)]
    return [str(item) for item in value]


def _required_link(url: str, name: str) -> str:
    if not url:
        raise CommunicationError(f"NSG sent a job status without <{name}>.")
    return url


@contextmanager
def _opened(input_file: InputFile) -> Iterator[bytes | BinaryIO]:
    """The upload's content: bytes or a file as they are, a path opened (and closed) here."""
    if isinstance(input_file, str):
        # A str is ambiguous (path or content?) and has bitten other clients
        # (docs/nsg-protocol.md §4): ask for a Path or bytes instead.
        raise TypeError("input_file must be bytes, a binary file or a pathlib.Path, not str")
    if isinstance(input_file, os.PathLike):
        with open(Path(input_file), "rb") as file:
            yield file
    else:
        yield input_file
