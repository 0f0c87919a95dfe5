"""Write the XML documents NSG sends, in its element order (docs/nsg-protocol.md §5).

Every document starts with the declaration NSG sends and is pretty-printed with four
spaces; every URL in it is absolute, on the emulator's own host and port.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from xml.etree.ElementTree import Element, SubElement, indent, tostring

from .jobs import Job
from .tools import ToolDefinition

DECLARATION = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'


@dataclass(frozen=True)
class Listed:
    """A file in a results or working-directory listing."""

    filename: str
    length: int
    parameter_name: str
    document_id: int
    url: str


def render(root: Element) -> bytes:
    indent(root, space="    ")
    return (DECLARATION + tostring(root, encoding="unicode") + "\n").encode("utf-8")


def links(base_url: str) -> bytes:
    root = Element("links")
    _link(root, "link", f"{base_url}/job", "jobs", "Jobs")
    _link(root, "link", f"{base_url}/tool", "tools", "Tools")
    return render(root)


def job_status(job: Job, job_url: str, min_poll_seconds: int) -> bytes:
    return render(_job_status(job, job_url, min_poll_seconds))


def job_list(jobs: Iterable[tuple[Job, str]], *, expand: bool, min_poll_seconds: int) -> bytes:
    root = Element("joblist")
    SubElement(root, "title").text = "Submitted Jobs"
    wrapper = SubElement(root, "jobs")
    for job, job_url in jobs:
        if expand:
            wrapper.append(_job_status(job, job_url, min_poll_seconds))
        else:
            status = SubElement(wrapper, "jobstatus")
            _link(status, "selfUri", job_url, "jobstatus", job.handle)
    return render(root)


def validation(commandline: str) -> bytes:
    root = Element("jobstatus")
    SubElement(root, "commandline").text = commandline
    return render(root)


def job_files(root_tag: str, handle: str, files: Iterable[Listed]) -> bytes:
    """A `<results>` or `<workingdir>` listing."""
    root = Element(root_tag)
    wrapper = SubElement(root, "jobfiles")
    for listed in files:
        jobfile = SubElement(wrapper, "jobfile")
        _link(jobfile, "downloadUri", listed.url, "fileDownload", listed.filename)
        SubElement(jobfile, "jobHandle").text = handle
        SubElement(jobfile, "filename").text = listed.filename
        SubElement(jobfile, "length").text = str(listed.length)
        SubElement(jobfile, "parameterName").text = listed.parameter_name
        SubElement(jobfile, "outputDocumentId").text = str(listed.document_id)
    return render(root)


def error(
    code: int,
    display_message: str,
    message: str,
    *,
    param_errors: dict[str, str] | None = None,
    limit_status: dict[str, str] | None = None,
) -> bytes:
    root = Element("error")
    SubElement(root, "displayMessage").text = display_message
    SubElement(root, "message").text = message
    SubElement(root, "code").text = str(code)
    for name, text in (param_errors or {}).items():
        param_error = SubElement(root, "paramError")
        SubElement(param_error, "param").text = name
        SubElement(param_error, "error").text = text
    if limit_status is not None:
        limit = SubElement(root, "limitStatus")
        for name in ("type", "ceiling", "remaining", "resetMinutes", "resetDate"):
            SubElement(limit, name).text = limit_status[name]
    return render(root)


def tools(definitions: Iterable[ToolDefinition], base_url: str) -> bytes:
    # No sample of NSG's tool list was available: this shape is the emulator's own.
    root = Element("tools")
    for tool in definitions:
        entry = SubElement(root, "tool")
        SubElement(entry, "toolId").text = tool.tool_id
        SubElement(entry, "toolName").text = tool.name
        _link(entry, "piseUri", f"{base_url}/tool/{tool.tool_id}/doc/pise", "pise", tool.tool_id)
    return render(root)


def pise(tool: ToolDefinition) -> bytes:
    """A minimal PISE description: the tool's visible parameters and their limits."""
    root = Element("pise")
    head = SubElement(root, "head")
    SubElement(head, "title").text = tool.tool_id
    SubElement(head, "description").text = tool.name
    parameters = SubElement(root, "parameters")
    for spec in tool.params.values():
        parameter = SubElement(parameters, "parameter", type=spec.kind)
        SubElement(parameter, "name").text = spec.name
        SubElement(parameter, "prompt").text = spec.label
        if spec.default is not None:
            SubElement(parameter, "default").text = spec.default
        if spec.minimum is not None:
            SubElement(parameter, "min").text = str(spec.minimum)
        if spec.maximum is not None:
            SubElement(parameter, "max").text = str(spec.maximum)
        if spec.required:
            SubElement(parameter, "required").text = "true"
    return render(root)


def _job_status(job: Job, job_url: str, min_poll_seconds: int) -> Element:
    root = Element("jobstatus")
    _link(root, "selfUri", job_url, "jobstatus", job.handle)
    SubElement(root, "jobHandle").text = job.handle
    SubElement(root, "jobStage").text = job.stage
    SubElement(root, "terminalStage").text = _boolean(job.terminal)
    SubElement(root, "failed").text = _boolean(job.failed)
    metadata = SubElement(root, "metadata")
    for key, value in job.metadata:
        entry = SubElement(metadata, "entry")
        SubElement(entry, "key").text = key
        SubElement(entry, "value").text = value
    SubElement(root, "dateSubmitted").text = job.date_submitted
    _link(root, "resultsUri", f"{job_url}/output", "results", "Job Results")
    _link(root, "workingDirUri", f"{job_url}/workingdir", "workingdir", "Job Working Directory")
    messages = SubElement(root, "messages")
    for message in job.messages:
        entry = SubElement(messages, "message")
        SubElement(entry, "timestamp").text = message.timestamp
        SubElement(entry, "stage").text = message.stage
        SubElement(entry, "text").text = message.text
    SubElement(root, "minPollIntervalSeconds").text = str(min_poll_seconds)
    return root


def _link(parent: Element, tag: str, url: str, rel: str, title: str) -> None:
    element = SubElement(parent, tag)
    SubElement(element, "url").text = url
    SubElement(element, "rel").text = rel
    SubElement(element, "title").text = title


def _boolean(value: bool) -> str:
    return "true" if value else "false"
