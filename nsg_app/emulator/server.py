"""The emulator's HTTP side: NSG's URLs, checks, status codes and documents.

Routes (docs/nsg-protocol.md §3, §10), under /cipresrest/v1:
  GET            ""                                   <links> (public)
  GET            /job                                 the authenticated user's <joblist>
  GET, POST      /job/{user}                          <joblist> [?expand=true]; submit
  POST           /job/{user}/validate                 dry run: <jobstatus><commandline>
  GET, DELETE    /job/{user}/{handle}                 <jobstatus>; cancel and delete
  GET            /job/{user}/{handle}/output[/{id}]   <results>; download a result
  GET            /job/{user}/{handle}/workingdir[/{name}]
  GET            /tool, /tool/{id}/doc/pise           (public)
Test endpoints (only with enable_test_endpoints), outside the API:
  GET, DELETE    /_emulator/faults                    every user's faults; clear all
  POST, DELETE   /_emulator/faults/{user}             add one (form: kind, count, ...); clear
  GET            /_emulator/requests/{user}           the user's last requests (method,
  DELETE         /_emulator/requests                   path, headers); forget them all
Only DIRECT authentication is emulated (no UMBRELLA `cipres-eu` headers).
"""

from __future__ import annotations

import base64
import binascii
import collections
import hmac
import json
import logging
import re
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

from models_app.bpo.sandbox import BWRAP, Sandbox

from . import documents
from .faults import Fault, FaultRegistry
from .forms import Form, FormError, parse_form
from .jobs import (
    INPUTSTAGING,
    LOAD_RESULTS,
    QUEUE,
    SUBMITTED,
    Job,
    JobStore,
    new_handle,
    now,
    timestamp,
)
from .runner import ClusterSettings, JobRunners
from .tools import TOOLS, render_commandline, validate_vparams

logger = logging.getLogger(__name__)

API_PREFIX = "/cipresrest/v1"
XML_TYPES = ("application/xml", "text/xml")
DOWNLOAD_TYPES = ("text/plain", "application/octet-stream")
CHUNK_BYTES = 1 << 16
REQUEST_LOG_LENGTH = 500
AUTH_EXCEPTION = "org.ngbw.cipresrest.auth.AuthenticationException"
# The stages during which a job has a working directory on the cluster.
WORKING_STAGES = {INPUTSTAGING, SUBMITTED, LOAD_RESULTS}
# HTTP status for each NSG error code (docs/nsg-protocol.md §5.5).
STATUS_BY_CODE = {1: 403, 2: 401, 4: 404, 5: 400, 6: 404, 7: 400, 100: 500, 103: 429}


@dataclass(frozen=True)
class EmulatorConfig:
    users: dict[str, str]
    app_key: str
    host: str = "127.0.0.1"
    port: int = 8765
    stage_seconds: float = 2.0
    min_poll_seconds: int = 60
    time_scale: float = 1.0
    data_dir: Path | None = None
    enable_test_endpoints: bool = False
    faults: list[tuple[str, Fault]] = field(default_factory=list)
    retention_days: float = 28.0
    max_upload_bytes: int = 1024**3
    sandbox: str = BWRAP  # how jobs' code runs: "bwrap" or "off"


class ApiError(Exception):
    """An NSG `<error>` reply."""

    def __init__(
        self,
        code: int,
        display_message: str,
        message: str = "",
        *,
        status: int | None = None,
        param_errors: dict[str, str] | None = None,
        limit_status: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message or display_message)
        self.code = code
        self.status = status or STATUS_BY_CODE.get(code, 400)
        self.display_message = display_message
        self.message = message or display_message
        self.param_errors = param_errors
        self.limit_status = limit_status
        self.headers = headers or {}


class PlainReply(Exception):
    """A reply without an NSG document (405, 406, 411, ...)."""

    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.headers = headers or {}


class Emulator:
    """Everything behind the HTTP server: jobs, their runners, faults, request log."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self._temporary_dir = None
        data_dir = config.data_dir
        if data_dir is None:
            self._temporary_dir = tempfile.mkdtemp(prefix="nsg-emulator-")
            data_dir = Path(self._temporary_dir)
        self.store = JobStore(Path(data_dir))
        self.runners = JobRunners(
            self.store,
            ClusterSettings(config.stage_seconds, config.time_scale, Sandbox(config.sandbox)),
        )
        self.faults = FaultRegistry()
        for user, fault in config.faults:
            self.faults.add(user, fault)
        self._requests: dict[str, collections.deque] = {}
        self._requests_lock = threading.Lock()

    def start(self) -> None:
        jobs = self.store.load()
        self.remove_expired_jobs()
        self.runners.resume([job for job in jobs if self.store.live(job.handle) is not None])

    def shutdown(self) -> None:
        self.runners.stop_all()
        if self._temporary_dir is not None:
            shutil.rmtree(self._temporary_dir, ignore_errors=True)

    def remove_expired_jobs(self) -> None:
        for handle in self.store.expired(timedelta(days=self.config.retention_days)):
            self.delete_job(handle)

    def delete_job(self, handle: str) -> None:
        self.runners.stop(handle)
        self.store.delete(handle)

    def log_request(self, user: str, entry: dict) -> None:
        with self._requests_lock:
            log = self._requests.setdefault(user, collections.deque(maxlen=REQUEST_LOG_LENGTH))
            log.append(entry)

    def logged_requests(self, user: str) -> list[dict]:
        with self._requests_lock:
            return list(self._requests.get(user, ()))

    def forget_requests(self) -> None:
        with self._requests_lock:
            self._requests.clear()


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, config: EmulatorConfig) -> None:
        if ":" in config.host:
            self.address_family = socket.AF_INET6
        self.emulator = Emulator(config)
        super().__init__((config.host, config.port), RequestHandler)

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}{API_PREFIX}"


def create_server(config: EmulatorConfig) -> EmulatorServer:
    """Bind the server and resume the jobs found in the data dir; call serve_forever next."""
    server = EmulatorServer(config)
    server.emulator.start()
    return server


# (method set, pattern, handler name); patterns are matched against the path after API_PREFIX.
ROUTES = [
    ({"GET"}, r"/?", "service_root"),
    ({"GET"}, r"/job/?", "own_jobs"),
    ({"GET", "POST"}, r"/job/(?P<user>[^/]+)/?", "jobs"),
    ({"POST"}, r"/job/(?P<user>[^/]+)/validate/?", "validate"),
    ({"GET", "DELETE"}, r"/job/(?P<user>[^/]+)/(?P<handle>[^/]+)/?", "job"),
    ({"GET"}, r"/job/(?P<user>[^/]+)/(?P<handle>[^/]+)/output/?", "results"),
    ({"GET"}, r"/job/(?P<user>[^/]+)/(?P<handle>[^/]+)/output/(?P<document>[^/]+)", "result_file"),
    ({"GET"}, r"/job/(?P<user>[^/]+)/(?P<handle>[^/]+)/workingdir/?", "working_dir"),
    ({"GET"}, r"/job/(?P<user>[^/]+)/(?P<handle>[^/]+)/workingdir/(?P<name>[^/]+)", "working_file"),
    ({"GET"}, r"/tool/?", "tools"),
    ({"GET"}, r"/tool/(?P<tool>[^/]+)/doc/pise/?", "pise"),
]
COMPILED_ROUTES = [(methods, re.compile(pattern), name) for methods, pattern, name in ROUTES]
PUBLIC_HANDLERS = {"service_root", "tools", "pise"}
DOWNLOAD_HANDLERS = {"result_file", "working_file"}


class RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Apache-Coyote/1.1"
    sys_version = ""
    # Headers and body go out in separate writes: without this, Nagle's algorithm and
    # delayed ACKs add 40 ms to every reply on a kept-alive connection.
    disable_nagle_algorithm = True
    server: EmulatorServer

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def log_message(self, format: str, *args) -> None:
        logger.info("%s %s", self.address_string(), format % args)

    @property
    def emulator(self) -> Emulator:
        return self.server.emulator

    def _handle(self, method: str) -> None:
        self.user: str | None = None
        try:
            self.body = self._read_body()
            url = urlsplit(self.path)
            self.query = parse_qs(url.query)
            if url.path.startswith("/_emulator/") and self.emulator.config.enable_test_endpoints:
                self._test_endpoint(method, url.path)
            elif url.path == API_PREFIX or url.path.startswith(API_PREFIX + "/"):
                self._api(method, url.path[len(API_PREFIX) :])
            else:
                raise ApiError(4, "Resource not found.", f"No resource at {url.path}.")
        except ApiError as error:
            self._send_error(error)
        except PlainReply as reply:
            self._send(reply.status, b"", headers=reply.headers)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:
            logger.exception("Emulator failure on %s %s", method, self.path)
            self._send_error(ApiError(100, "Internal Cipres Error", f"{type(exc).__name__}: {exc}"))

    # -- the API --------------------------------------------------------------------

    def _api(self, method: str, route: str) -> None:
        for methods, pattern, name in COMPILED_ROUTES:
            match = pattern.fullmatch(route)
            if match is None:
                continue
            if method not in methods:
                raise PlainReply(405, {"Allow": ", ".join(sorted(methods))})
            offered = DOWNLOAD_TYPES if name in DOWNLOAD_HANDLERS else XML_TYPES
            if not _accepts(self.headers.get("Accept"), offered):
                raise PlainReply(406)
            self._record_request(method)
            if name not in PUBLIC_HANDLERS:
                self.user = self._authenticate()
            elif self.headers.get("Authorization"):
                # Public documents: credentials are not needed, but when valid they make
                # the user's faults apply here too.
                try:
                    self.user = self._authenticate()
                except ApiError:
                    self.user = None
            if self.user:
                self._apply_request_faults(self.user)
            params = {key: unquote(value) for key, value in match.groupdict().items()}
            getattr(self, f"_api_{name}")(method, **params)
            return
        raise ApiError(4, "Resource not found.", f"No resource at {API_PREFIX}{route}.")

    def _api_service_root(self, method: str) -> None:
        self._send_xml(documents.links(self._base_url()))

    def _api_own_jobs(self, method: str) -> None:
        self._send_job_list(self.user)

    def _api_jobs(self, method: str, user: str) -> None:
        self._check_user(user)
        if method == "GET":
            self._send_job_list(user)
            return
        job, upload = self._new_job(self._read_form())
        job.add_message(QUEUE, "Added to NSG run queue.")
        if self.emulator.faults.take(user, "staging_failure"):
            job.fail_at_staging = True
        walltime = self.emulator.faults.take(user, "walltime")
        if walltime:
            job.walltime_seconds_override = walltime.seconds
        reply = documents.job_status(job, self._job_url(job), self._min_poll())
        self.emulator.store.add(job, upload)
        self.emulator.runners.start(job.handle)
        self.emulator.remove_expired_jobs()
        self._send_xml(reply)

    def _api_validate(self, method: str, user: str) -> None:
        self._check_user(user)
        job, _ = self._new_job(self._read_form())
        self._send_xml(documents.validation(job.commandline))

    def _api_job(self, method: str, user: str, handle: str) -> None:
        job = self._job(user, handle)
        if method == "DELETE":
            self.emulator.delete_job(job.handle)
            self._send(200, b"")
            return
        self._send_xml(documents.job_status(job, self._job_url(job), self._min_poll()))

    def _api_results(self, method: str, user: str, handle: str) -> None:
        job = self._job(user, handle)
        folder = self.emulator.store.folder(handle) / "results"
        listed = []
        for result in job.results:
            path = folder / result.filename
            if path.is_file():
                url = f"{self._job_url(job)}/output/{result.document_id}"
                listed.append(
                    documents.Listed(
                        result.filename,
                        path.stat().st_size,
                        result.parameter_name,
                        result.document_id,
                        url,
                    )
                )
        self._send_xml(documents.job_files("results", job.handle, listed))

    def _api_result_file(self, method: str, user: str, handle: str, document: str) -> None:
        job = self._job(user, handle)
        for result in job.results:
            if str(result.document_id) == document:
                path = self.emulator.store.folder(handle) / "results" / result.filename
                self._send_file(path, result.filename)
                return
        raise ApiError(4, "Document not found.", f"Job {handle} has no output {document}.")

    def _api_working_dir(self, method: str, user: str, handle: str) -> None:
        job = self._job(user, handle)
        listed = []
        for path in self._working_files(job):
            url = f"{self._job_url(job)}/workingdir/{quote(path.name)}"
            listed.append(documents.Listed(path.name, path.stat().st_size, path.name, 0, url))
        self._send_xml(documents.job_files("workingdir", job.handle, listed))

    def _api_working_file(self, method: str, user: str, handle: str, name: str) -> None:
        job = self._job(user, handle)
        for path in self._working_files(job):
            if path.name == name:
                self._send_file(path, name)
                return
        raise ApiError(4, "File not found.", f"No file {name!r} in the working directory.")

    def _api_tools(self, method: str) -> None:
        self._send_xml(documents.tools(TOOLS.values(), self._base_url()))

    def _api_pise(self, method: str, tool: str) -> None:
        definition = TOOLS.get(tool)
        if definition is None:
            raise ApiError(4, "Tool not found.", f"No tool {tool!r}.")
        self._send_xml(documents.pise(definition))

    # -- checks -----------------------------------------------------------------------

    def _authenticate(self) -> str:
        scheme, _, encoded = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic" or not encoded.strip():
            raise _authentication_error("Authentication credentials are required.")
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise _authentication_error("Malformed Basic credentials.") from None
        user, _, password = decoded.partition(":")
        expected = self.emulator.config.users.get(user)
        if expected is None or not _same(password, expected):
            raise _authentication_error("Invalid username or password.")
        app_key = self.headers.get("cipres-appkey", "")
        if not app_key:
            raise _authentication_error("The cipres-appkey header is required.")
        if not _same(app_key, self.emulator.config.app_key):
            raise _authentication_error("Invalid application key (cipres-appkey).")
        return user

    def _check_user(self, url_user: str) -> None:
        if url_user != self.user:
            raise ApiError(
                6,
                "User mismatch.",
                f"User Mismatch: authenticated as {self.user}, but the URL names {url_user}.",
            )

    def _job(self, user: str, handle: str) -> Job:
        self._check_user(user)
        job = self.emulator.store.get(handle)
        if job is None:
            raise ApiError(4, "Job not found.", f"Job Not Found: {handle}")
        if job.user != user:
            raise ApiError(6, "User mismatch.", f"User Mismatch: {user} does not own {handle}.")
        return job

    def _apply_request_faults(self, user: str) -> None:
        faults = self.emulator.faults
        slow = faults.take(user, "slow")
        if slow:
            time.sleep(slow.delay)
        limit = faults.take(user, "usage_limit")
        if limit:
            reset = now() + timedelta(minutes=limit.reset_minutes)
            headers = {}
            if limit.retry_after is not None:
                headers["Retry-After"] = f"{limit.retry_after:g}"
            raise ApiError(
                103,
                "Usage limit exceeded.",
                "Usage Limit Error: too many concurrent requests.",
                limit_status={
                    "type": "concurrent_requests",
                    "ceiling": "10",
                    "remaining": "0",
                    "resetMinutes": f"{limit.reset_minutes:g}",
                    "resetDate": timestamp(reset),
                },
                headers=headers,
            )
        if faults.take(user, "http500"):
            raise ApiError(100, "Internal Cipres Error", "Injected fault: http500.")

    def _new_job(self, form: Form) -> tuple[Job, bytes]:
        """Validate a submission form; the job is returned but not stored yet."""
        errors: dict[str, str] = {}
        tool_ids = form.values("tool")
        tool = TOOLS.get(tool_ids[0]) if tool_ids else None
        if not tool_ids or not tool_ids[0]:
            errors["tool"] = "Tool is required."
        elif tool is None:
            errors["tool"] = f"Unknown tool: {tool_ids[0]}."
        vparams: dict[str, list[str]] = {}
        metadata: list[tuple[str, str]] = []
        inputs: dict[str, list[bytes]] = {}
        for name, value in form.fields:
            prefix, _, rest = name.partition(".")
            if prefix == "vparam":
                vparams.setdefault(rest, []).append(value)
            elif prefix == "metadata":
                metadata.append((rest, value))
            elif prefix == "input":
                inputs.setdefault(rest, []).append(value.encode("utf-8"))
        for name, uploaded in form.files:
            prefix, _, rest = name.partition(".")
            if prefix == "input":
                inputs.setdefault(rest, []).append(uploaded.content)
        for name in inputs:
            if name != "infile_":
                errors[name] = f"Unknown input parameter {name}."
        upload = inputs.get("infile_", [])
        if not upload:
            errors["infile_"] = "Input file is required."
        elif len(upload) > 1:
            errors["infile_"] = "Input file must be given once."
        elif not upload[0]:
            errors["infile_"] = "Input file is empty."
        settings = None
        if tool is not None:
            settings, vparam_errors = validate_vparams(tool, vparams)
            errors.update(vparam_errors)
        if errors or settings is None or tool is None:
            details = "; ".join(f"{name}: {text}" for name, text in errors.items())
            raise ApiError(
                5, "Form validation error.", f"Validation Error: {details}", param_errors=errors
            )
        job = Job(
            handle=new_handle(tool.tool_id),
            user=self.user or "",
            tool=tool.tool_id,
            vparams=vparams,
            metadata=metadata,
            date_submitted=timestamp(),
            commandline=render_commandline(settings),
        )
        return job, upload[0]

    def _read_form(self) -> Form:
        try:
            return parse_form(self.headers.get("Content-Type", ""), self.body)
        except FormError as exc:
            raise ApiError(5, "Form validation error.", f"Validation Error: {exc}") from exc

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise PlainReply(411)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            raise PlainReply(400) from None
        if length > self.emulator.config.max_upload_bytes:
            self.close_connection = True
            raise ApiError(
                5,
                "Form validation error.",
                f"The request is larger than {self.emulator.config.max_upload_bytes} bytes.",
                status=413,
            )
        return self.rfile.read(length) if length > 0 else b""

    def _working_files(self, job: Job) -> list[Path]:
        workdir = self.emulator.store.folder(job.handle) / "workdir"
        if job.terminal or job.stage not in WORKING_STAGES or not workdir.is_dir():
            return []
        try:
            entries = sorted(workdir.iterdir())
        except OSError:
            return []
        return [path for path in entries if path.is_file() and not path.is_symlink()]

    # -- test endpoints ---------------------------------------------------------------

    def _test_endpoint(self, method: str, path: str) -> None:
        parts = [unquote(part) for part in path.split("/") if part][1:]
        if parts == ["faults"] and method == "GET":
            self._send_json(self.emulator.faults.snapshot())
        elif parts == ["faults"] and method == "DELETE":
            self.emulator.faults.clear()
            self._send_json({})
        elif len(parts) == 2 and parts[0] == "faults" and method == "POST":
            fields = dict(self._read_form().fields)
            try:
                fault = Fault.from_fields(fields.pop("kind", ""), fields)
            except ValueError as exc:
                self._send_json({"error": str(exc)}, status=400)
                return
            self.emulator.faults.add(parts[1], fault)
            self._send_json(self.emulator.faults.snapshot().get(parts[1], []))
        elif len(parts) == 2 and parts[0] == "faults" and method == "DELETE":
            self.emulator.faults.clear(parts[1])
            self._send_json({})
        elif len(parts) == 2 and parts[0] == "requests" and method == "GET":
            self._send_json(self.emulator.logged_requests(parts[1]))
        elif parts == ["requests"] and method == "DELETE":
            self.emulator.forget_requests()
            self._send_json({})
        else:
            self._send_json({"error": f"no test endpoint {method} {path}"}, status=404)

    def _record_request(self, method: str) -> None:
        user = "-"
        scheme, _, encoded = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                user = base64.b64decode(encoded.strip()).decode("utf-8").partition(":")[0]
            except (binascii.Error, UnicodeDecodeError):
                pass
        headers = {
            name: ("***" if name.lower() == "authorization" else value)
            for name, value in self.headers.items()
        }
        self.emulator.log_request(user, {"method": method, "path": self.path, "headers": headers})

    # -- replies ----------------------------------------------------------------------

    def _base_url(self) -> str:
        host = self.emulator.config.host
        if host in {"", "0.0.0.0", "::"} and self.headers.get("Host"):
            return f"http://{self.headers['Host']}{API_PREFIX}"
        return self.server.base_url

    def _job_url(self, job: Job) -> str:
        return f"{self._base_url()}/job/{quote(job.user, safe='')}/{job.handle}"

    def _min_poll(self) -> int:
        return self.emulator.config.min_poll_seconds

    def _send_job_list(self, user: str | None) -> None:
        expand = self.query.get("expand", ["false"])[-1].lower() == "true"
        jobs = self.emulator.store.for_user(user or "")
        body = documents.job_list(
            [(job, self._job_url(job)) for job in jobs],
            expand=expand,
            min_poll_seconds=self._min_poll(),
        )
        self._send_xml(body)

    def _send_xml(self, body: bytes, status: int = 200, headers: dict[str, str] | None = None):
        if self.user and self.emulator.faults.take(self.user, "malformed"):
            body = body[: len(body) // 2] + b"<<not xml"
        self._send(status, body, "application/xml", headers)

    def _send_error(self, error: ApiError) -> None:
        headers = dict(error.headers)
        if error.code == 2:
            headers["WWW-Authenticate"] = 'Basic realm="Cipres Authentication"'
        body = documents.error(
            error.code,
            error.display_message,
            error.message,
            param_errors=error.param_errors,
            limit_status=error.limit_status,
        )
        self._send(error.status, body, "application/xml", headers)

    def _send_json(self, data, status: int = 200) -> None:
        self._send(status, json.dumps(data, indent=2).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str | None = None, headers=None):
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _send_file(self, path: Path, filename: str) -> None:
        """Raw bytes, chunked, labelled text/plain as NSG does even for tarballs."""
        try:
            file = open(path, "rb")  # noqa: SIM115 - closed below, after the headers
        except OSError:
            raise ApiError(4, "File not found.", f"{filename} is gone.") from None
        with file:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Disposition", f"attachment; filename={filename}")
            self.send_header("Cache-Control", "private")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while chunk := file.read(CHUNK_BYTES):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")


def _authentication_error(detail: str) -> ApiError:
    return ApiError(2, "Authentication Error", f"Authentication Error: {AUTH_EXCEPTION}: {detail}")


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _accepts(accept: str | None, offered: tuple[str, ...]) -> bool:
    """Whether an Accept header admits one of `offered` (no header admits everything)."""
    if accept is None or not accept.strip():
        return True
    for item in accept.split(","):
        media, *params = [part.strip().lower() for part in item.split(";")]
        quality = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    quality = float(param[2:])
                except ValueError:
                    quality = 0.0
        if quality <= 0:
            continue
        for candidate in offered:
            if media in {"*/*", candidate, candidate.split("/")[0] + "/*"}:
                return True
    return False
