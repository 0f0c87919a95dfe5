"""The one place that fetches published optimisations from the HBP repository over HTTP.

Default layout (bsp_data_repository): an index listing folders `optimizations/<NAME>/`,
each holding `<NAME>.zip` beside `<NAME>_meta.json`. The index is GitHub's contents API
(a JSON list of entries with "name" and "type"); a local mirror can be named with file://.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, unquote, urlparse

import requests

TIMEOUT = (10, 60)
CHUNK = 1024 * 1024
USER_AGENT = "rebuild-scm (catalogue refresh)"


class RepositoryError(Exception):
    """The repository could not be read, with a message for the person who asked."""


@dataclass(frozen=True)
class RepositoryEntry:
    name: str
    zip_url: str
    meta_url: str


def _open(url: str, session: requests.Session | None) -> tuple[BinaryIO, int | None]:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        path = Path(unquote(parsed.path))
        try:
            return open(path, "rb"), path.stat().st_size
        except OSError as error:
            raise RepositoryError(f"cannot read {url}: {error.strerror}") from None
    session = session or requests.Session()
    try:
        response = session.get(
            url, stream=True, timeout=TIMEOUT, headers={"User-Agent": USER_AGENT}
        )
    except requests.RequestException as error:
        raise RepositoryError(f"cannot reach {url}: {_why_unreachable(error)}") from None
    if response.status_code != 200:
        response.close()
        raise RepositoryError(f"{url} answered HTTP {response.status_code}")
    response.raw.decode_content = True
    length = response.headers.get("Content-Length")
    return response.raw, int(length) if length and length.isdigit() else None


def _why_unreachable(error: requests.RequestException) -> str:
    """A sentence for the user instead of urllib3's nested exception text."""
    host = urlparse(getattr(error.request, "url", "") or "").hostname or "the server"
    text = str(error)
    if isinstance(error, requests.Timeout):
        return f"{host} did not answer in time."
    if "NameResolutionError" in text or "Name or service not known" in text:
        return f"the name {host} could not be looked up (is this machine offline?)."
    if isinstance(error, requests.ConnectionError):
        return f"no connection to {host} could be made (is this machine offline?)."
    if isinstance(error, requests.exceptions.SSLError):
        return f"the secure connection to {host} failed."
    return f"the request failed ({type(error).__name__})."


def download(
    url: str, destination: BinaryIO, *, max_bytes: int, session: requests.Session | None = None
) -> int:
    """Stream `url` into `destination`, refusing more than `max_bytes`; returns the size."""
    source, announced = _open(url, session)
    with source:
        if announced is not None and announced > max_bytes:
            raise RepositoryError(f"{url} is {announced} bytes, more than the {max_bytes} allowed")
        written = 0
        while chunk := source.read(CHUNK):
            written += len(chunk)
            if written > max_bytes:
                raise RepositoryError(f"{url} is larger than the {max_bytes} bytes allowed")
            destination.write(chunk)
    return written


def fetch_json(
    url: str, *, max_bytes: int = 5 * 1024 * 1024, session: requests.Session | None = None
):
    buffer = io.BytesIO()
    download(url, buffer, max_bytes=max_bytes, session=session)
    try:
        return json.loads(buffer.getvalue().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RepositoryError(f"{url} is not valid JSON: {error}") from None


def list_optimisations(
    index_url: str, base_url: str, *, session: requests.Session | None = None
) -> list[RepositoryEntry]:
    """The optimisations the index lists, with the addresses of their zip and metadata."""
    listing = fetch_json(index_url, session=session)
    if not isinstance(listing, list):
        raise RepositoryError(f"{index_url} does not list folders (expected a JSON list)")
    entries = []
    base = base_url.rstrip("/")
    for item in listing:
        if (
            not isinstance(item, dict)
            or item.get("type") != "dir"
            or not isinstance(item.get("name"), str)
        ):
            continue
        name = item["name"]
        if "/" in name or name.startswith("."):
            continue
        folder = f"{base}/{quote(name)}"
        entries.append(
            RepositoryEntry(
                name, f"{folder}/{quote(name)}.zip", f"{folder}/{quote(name)}_meta.json"
            )
        )
    return sorted(entries, key=lambda entry: entry.name)
