"""Read a submitted form: multipart/form-data (job submissions) or urlencoded.

The standard library's `cgi` is deprecated and the `email` parser is not meant for
binary HTTP bodies, so multipart is split here, byte-exact, on its boundary (RFC 7578).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import Message
from email.parser import HeaderParser
from urllib.parse import parse_qsl


class FormError(ValueError):
    """The body is not a form we can read."""


@dataclass(frozen=True)
class FormFile:
    filename: str
    content: bytes


@dataclass
class Form:
    fields: list[tuple[str, str]] = field(default_factory=list)
    files: list[tuple[str, FormFile]] = field(default_factory=list)

    def values(self, name: str) -> list[str]:
        return [value for key, value in self.fields if key == name]


def parse_form(content_type: str, body: bytes) -> Form:
    header = Message()
    header["Content-Type"] = content_type or "application/octet-stream"
    media_type = header.get_content_type()
    if media_type == "application/x-www-form-urlencoded":
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormError("The form is not UTF-8.") from exc
        return Form(fields=parse_qsl(text, keep_blank_values=True))
    if media_type == "multipart/form-data":
        boundary = header.get_param("boundary")
        if not isinstance(boundary, str) or not boundary:
            raise FormError("The multipart form has no boundary.")
        return _parse_multipart(body, boundary.encode("latin-1"))
    raise FormError(f"Expected a multipart/form-data body, got {media_type}.")


def _parse_multipart(body: bytes, boundary: bytes) -> Form:
    form = Form()
    # Every delimiter, the first included, follows a CRLF once the body is prefixed with one.
    sections = (b"\r\n" + body).split(b"\r\n--" + boundary)
    if len(sections) < 2:
        raise FormError("The multipart form holds no part.")
    closed = False
    for section in sections[1:]:
        if section.startswith(b"--"):
            closed = True
            break
        header_end = section.find(b"\r\n\r\n")
        if header_end < 0:
            raise FormError("A multipart part has no header end.")
        # What follows the boundary on its line is padding; the headers start after it.
        line_end = section.find(b"\r\n")
        headers = HeaderParser().parsestr(section[line_end + 2 : header_end].decode("latin-1"))
        content = section[header_end + 4 :]
        name = headers.get_param("name", header="content-disposition")
        if not isinstance(name, str) or not name:
            raise FormError("A multipart part has no name.")
        filename = headers.get_filename()
        if filename is not None:
            form.files.append((name, FormFile(filename=filename, content=content)))
        else:
            try:
                form.fields.append((name, content.decode("utf-8")))
            except UnicodeDecodeError as exc:
                raise FormError(f"The form field {name!r} is not UTF-8.") from exc
    if not closed:
        raise FormError("The multipart form is truncated (no closing boundary).")
    return form
