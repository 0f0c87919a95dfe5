"""Refresh from repository without network: a sentence, not a Python exception."""

import socket

import pytest

from models_app.repository import RepositoryError, list_optimisations


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    ("url", "sentence"),
    [
        (
            f"http://127.0.0.1:{_closed_port()}/index.json",
            "no connection to 127.0.0.1 could be made (is this machine offline?).",
        ),
        (
            "http://models.invalid/index.json",
            "the name models.invalid could not be looked up (is this machine offline?).",
        ),
    ],
)
def test_an_unreachable_repository_is_said_in_a_sentence(url, sentence):
    with pytest.raises(RepositoryError) as raised:
        list_optimisations(url, url.rsplit("/", 1)[0])
    message = str(raised.value)
    assert message == f"cannot reach {url}: {sentence}"
    assert "Error(" not in message and "HTTPConnectionPool" not in message
