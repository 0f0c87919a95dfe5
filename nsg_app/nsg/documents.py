"""Parse the XML documents NSG sends (docs/nsg-protocol.md §5).

Everything here reads untrusted bytes, so it goes through defusedxml only. Values are
stripped (NSG pretty-prints its replies and some texts end with a newline), and any
reply that is not the document we expect becomes a CommunicationError (code 101).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from .errors import CommunicationError, ErrorDetails, LimitStatus

# NSG's polling policy when a reply does not say (docs/nsg-protocol.md §6).
DEFAULT_MIN_POLL_INTERVAL_SECONDS = 60


class JobMessage(NamedTuple):
    """One entry of a job's `<messages>`: when, at which stage, what happened."""

    timestamp: datetime | None
    stage: str
    text: str


@dataclass(frozen=True)
class JobStatus:
    """A `<jobstatus>` document. `terminal` means finished; then `failed` says how."""

    handle: str
    stage: str
    terminal: bool
    failed: bool
    metadata: dict[str, str] = field(default_factory=dict)
    date_submitted: datetime | None = None
    self_url: str = ""
    results_url: str = ""
    working_dir_url: str = ""
    messages: list[JobMessage] = field(default_factory=list)
    min_poll_interval_seconds: int = DEFAULT_MIN_POLL_INTERVAL_SECONDS
    commandline: str | None = None

    @property
    def client_job_id(self) -> str | None:
        return self.metadata.get("clientJobId")


@dataclass(frozen=True)
class JobFile:
    """A `<jobfile>` of a results or working-directory listing."""

    job_handle: str
    filename: str
    length: int
    parameter_name: str
    output_document_id: int
    download_url: str


@dataclass(frozen=True)
class Tool:
    """An entry of the `GET /tool` listing."""

    tool_id: str
    name: str


def parse_root(body: bytes, expected_tag: str) -> Element:
    """Parse `body` and check its root element, or raise CommunicationError."""
    try:
        root = fromstring(body)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise CommunicationError(
            f"NSG sent a reply that is not well-formed XML: {exc}",
            display_message="Malformed reply from NSG.",
        ) from exc
    if root.tag != expected_tag:
        raise CommunicationError(
            f"NSG sent <{root.tag}> where <{expected_tag}> was expected.",
            display_message="Unexpected reply from NSG.",
        )
    return root


def parse_job_status(body: bytes) -> JobStatus:
    return _job_status(parse_root(body, "jobstatus"))


def parse_validation(body: bytes) -> str:
    """The command line of a validate-only reply (a `<jobstatus>` with `<commandline>`)."""
    root = parse_root(body, "jobstatus")
    return _text(root, "commandline")


def parse_job_list(body: bytes) -> list[JobStatus]:
    """An expanded `<joblist>` (`?expand=true`): full job statuses."""
    root = parse_root(body, "joblist")
    jobs = root.find("jobs")
    if jobs is None:
        return []
    return [_job_status(element) for element in jobs.findall("jobstatus")]


def parse_job_files(body: bytes, root_tag: str) -> list[JobFile]:
    """A `<results>` or `<workingdir>` listing."""
    root = parse_root(body, root_tag)
    files = root.find("jobfiles")
    if files is None:
        return []
    return [_job_file(element) for element in files.findall("jobfile")]


def parse_tools(body: bytes) -> list[Tool]:
    root = parse_root(body, "tools")
    return [
        Tool(tool_id=_required(element, "toolId"), name=_text(element, "toolName"))
        for element in root.findall("tool")
    ]


def parse_error(body: bytes) -> ErrorDetails | None:
    """The content of an `<error>` document, or None when the body is not one."""
    try:
        root = fromstring(body)
    except (ParseError, DefusedXmlException, ValueError):
        return None
    if root.tag != "error":
        return None
    param_errors = {}
    for element in root.findall("paramError"):
        name = _text(element, "param")
        if name:
            param_errors[name] = _text(element, "error")
    limit = root.find("limitStatus")
    return ErrorDetails(
        code=_optional_int(root, "code"),
        display_message=_text(root, "displayMessage"),
        message=_text(root, "message"),
        param_errors=param_errors,
        limit_status=_limit_status(limit) if limit is not None else None,
    )


def parse_time(text: str) -> datetime:
    """An ISO-8601 time; NSG always adds a numeric offset, a bare time is taken as UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise CommunicationError(f"NSG sent a time that is not ISO-8601: {text!r}") from exc
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _job_status(element: Element) -> JobStatus:
    metadata = {}
    for entry in element.findall("metadata/entry"):
        key = _text(entry, "key")
        if key:
            metadata[key] = _text(entry, "value")
    messages = [
        JobMessage(
            timestamp=_optional_time(message, "timestamp"),
            stage=_text(message, "stage"),
            text=_text(message, "text"),
        )
        for message in element.findall("messages/message")
    ]
    poll = _optional_int(element, "minPollIntervalSeconds")
    commandline = element.find("commandline")
    return JobStatus(
        handle=_required(element, "jobHandle"),
        stage=_required(element, "jobStage"),
        terminal=_boolean(element, "terminalStage"),
        failed=_boolean(element, "failed"),
        metadata=metadata,
        date_submitted=_optional_time(element, "dateSubmitted"),
        self_url=_required(element, "selfUri/url"),
        results_url=_text(element, "resultsUri/url"),
        working_dir_url=_text(element, "workingDirUri/url"),
        messages=messages,
        min_poll_interval_seconds=DEFAULT_MIN_POLL_INTERVAL_SECONDS if poll is None else poll,
        commandline=(commandline.text or "").strip() if commandline is not None else None,
    )


def _job_file(element: Element) -> JobFile:
    length = _optional_int(element, "length")
    document_id = _optional_int(element, "outputDocumentId")
    if length is None or length < 0:
        raise CommunicationError("NSG listed a job file without a valid <length>.")
    return JobFile(
        job_handle=_text(element, "jobHandle"),
        filename=_required(element, "filename"),
        length=length,
        parameter_name=_text(element, "parameterName"),
        output_document_id=document_id or 0,
        download_url=_required(element, "downloadUri/url"),
    )


def _limit_status(element: Element) -> LimitStatus:
    reset_minutes = _text(element, "resetMinutes")
    return LimitStatus(
        type=_text(element, "type"),
        ceiling=_optional_int(element, "ceiling"),
        remaining=_optional_int(element, "remaining"),
        reset_minutes=_float_or_none(reset_minutes),
        reset_date=_optional_time(element, "resetDate", strict=False),
    )


def _text(element: Element, path: str) -> str:
    found = element.find(path)
    if found is None or found.text is None:
        return ""
    return found.text.strip()


def _required(element: Element, path: str) -> str:
    value = _text(element, path)
    if not value:
        raise CommunicationError(f"NSG sent a <{element.tag}> without <{path}>.")
    return value


def _boolean(element: Element, path: str) -> bool:
    value = _text(element, path).lower()
    if value not in {"true", "false"}:
        raise CommunicationError(f"NSG sent <{path}> {value!r}, not true or false.")
    return value == "true"


def _optional_int(element: Element, path: str) -> int | None:
    value = _text(element, path)
    if not value:
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise CommunicationError(f"NSG sent <{path}> {value!r}, not a whole number.") from exc


def _optional_time(element: Element, path: str, *, strict: bool = True) -> datetime | None:
    value = _text(element, path)
    if not value:
        return None
    try:
        return parse_time(value)
    except CommunicationError:
        if strict:
            raise
        return None


def _float_or_none(value: str) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None
