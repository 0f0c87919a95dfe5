"""The README's commands start from a plain shell once `make install` has written the .env.

Each command runs as the README prints it, from a copy of the checkout, with nothing in
its environment but PATH and HOME (`env -i`): build_package of the demo model, a real
short run_local of that package, analyse of the demo's own checkpoint, the NSG emulator
answering a request, and createsuperuser. Without the .env (production), the same shell
is refused with the message naming SECRET_KEY.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import requests

from tests.fixtures.demo import DEMO_NAME

ROOT = Path(__file__).resolve().parents[2]
PLAIN_PATH = "/usr/local/bin:/usr/bin:/bin"

pytestmark = pytest.mark.slow


def _checkout_copy(target: Path) -> Path:
    """The checkout's files (what git would commit, no var/, no .env), sharing its .venv."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file() and name != ".env":
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    (target / ".venv").symlink_to(ROOT / ".venv")
    return target


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    return _checkout_copy(tmp_path_factory.mktemp("checkout"))


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("home")


def plain_shell(command: str, cwd: Path, home: Path, timeout: float = 300, **env):
    """`command` run by sh under `env -i PATH=... HOME=...` (plus `env`, when given)."""
    extra = [f"{name}={value}" for name, value in env.items()]
    return subprocess.run(
        ["env", "-i", f"PATH={PLAIN_PATH}", f"HOME={home}", *extra, "sh", "-c", command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def installed(checkout, home) -> Path:
    """The copy after production's refusal, then the .env step of `make install`."""
    refused = plain_shell(".venv/bin/python manage.py check", checkout, home)
    assert refused.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in refused.stderr
    # `make install` with the shared .venv taken as installed: only its .env step runs.
    _ok(plain_shell("make -o .venv/.installed install", checkout, home))
    _ok(plain_shell(".venv/bin/python manage.py migrate --no-input -v 0", checkout, home))
    return checkout


def test_make_install_writes_a_development_env_once_and_never_over_the_users(installed, home):
    env_file = installed / ".env"
    assert "DEBUG=1" in env_file.read_text().splitlines()
    env_file.write_text("DEBUG=1\n# mine\n")

    _ok(plain_shell("make -o .venv/.installed install", installed, home))

    assert env_file.read_text() == "DEBUG=1\n# mine\n"


def test_the_environment_wins_over_the_env_file(installed, home):
    result = plain_shell(".venv/bin/python manage.py check", installed, home, DEBUG="0")

    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_build_run_and_analyse_the_demo_model_from_a_plain_shell(installed, home):
    _ok(
        plain_shell(
            f".venv/bin/python manage.py import_model models_app/demo/{DEMO_NAME}", installed, home
        )
    )

    _ok(
        plain_shell(
            f".venv/bin/python manage.py build_package {DEMO_NAME} -o run.zip"
            " --offspring 2 --generations 2",
            installed,
            home,
        )
    )
    assert (installed / "run.zip").stat().st_size > 0

    printed = _ok(
        plain_shell(
            ".venv/bin/python manage.py run_local run.zip -o run-folder --cores 2",
            installed,
            home,
            timeout=600,
        )
    )
    assert "completed" in printed
    assert (installed / "run-folder" / "output.tar.gz").is_file()

    printed = _ok(
        plain_shell(
            f".venv/bin/python manage.py analyse models_app/demo/{DEMO_NAME} -o analysis",
            installed,
            home,
            timeout=600,
        )
    )
    assert "Fitness of best: stored" in printed
    assert (installed / "analysis" / "analysis.json").is_file()


def test_the_nsg_emulator_starts_and_answers_from_a_plain_shell(installed, home):
    # The README's command; port 0 (any free one) instead of 8765, which may be taken.
    command = (
        ".venv/bin/python manage.py nsg_emulator --host 127.0.0.1 --port 0"
        " --user alice:secret --appkey DEV-0123 --stage-seconds 2 --data-dir var/nsg-emulator"
    )
    process = subprocess.Popen(
        ["env", "-i", f"PATH={PLAIN_PATH}", f"HOME={home}", "sh", "-c", f"exec {command}"],
        cwd=installed,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        ready, _, _ = select.select([process.stdout], [], [], 60)
        line = process.stdout.readline() if ready else ""
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+/cipresrest/v1)", line)
        assert match, line + (process.stderr.read() if process.poll() is not None else "")
        reply = requests.get(
            f"{match.group(1)}/job/alice",
            auth=("alice", "secret"),
            headers={"cipres-appkey": "DEV-0123"},
            timeout=10,
        )
        assert reply.status_code == 200
        assert "<joblist>" in reply.text
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        process.stdout.close()
        process.stderr.close()


def test_createsuperuser_from_a_plain_shell(installed, home):
    printed = _ok(
        plain_shell(
            ".venv/bin/python manage.py createsuperuser --no-input"
            " --username admin --email admin@example.org",
            installed,
            home,
        )
    )

    assert "Superuser created successfully." in printed
