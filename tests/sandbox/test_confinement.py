"""What a model's code can reach from inside the sandbox: its own folder, and nothing else.

Each test runs a small Python probe through ``Sandbox.popen``/``run`` exactly as the runners
do, and checks from outside that what the probe could not reach is really there.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from models_app.bpo.sandbox import (
    UNPRIVILEGED_ID,
    Limits,
    Sandbox,
    kill_group,
    open_written_inside,
)
from tests.fixtures.processes import alive, descendants

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {
    "SECRET_KEY": "django-secret",
    "CREDENTIALS_KEY": "fernet-key",
    "DATABASE_URL": "postgres://site:password@db/site",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "S3_ACCESS_KEY_ID": "access",
    "S3_SECRET_ACCESS_KEY": "secret",
    "NSG_APP_KEY": "app-key",
    "NSG_PASSWORD": "nsg-password",
}


@pytest.fixture
def work(tmp_path) -> Path:
    folder = tmp_path / "run"
    folder.mkdir()
    return folder


def probe(code: str, work: Path, *, env=None, limits=None, packages=(), readable=()) -> dict:
    """Run ``code`` (which fills the dict ``seen``) in the sandbox; what it saw."""
    script = "import json, os, sys\nseen = {}\n" + code + "\nprint(json.dumps(seen))\n"
    result = Sandbox().run(
        [sys.executable, "-c", script],
        cwd=work,
        writable=[work],
        packages=packages,
        readable=readable,
        env=env,
        limits=limits,
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout.decode().strip().splitlines()[-1])


READ = """
def read(path):
    try:
        with open(path, 'rb') as f:
            return f.read().decode()
    except OSError as error:
        return type(error).__name__
"""


def test_the_site_s_files_are_out_of_sight(work):
    secret = Path(os.environ["VAR_DIR"]) / "sandbox-secret.txt"
    secret.write_text("the site's secret")
    outside = [secret, ROOT / "pyproject.toml", ROOT / "manage.py", ROOT / ".git"]
    if (ROOT / ".env").exists():
        outside.append(ROOT / ".env")
    assert all(path.exists() for path in outside)

    seen = probe(
        READ + f"for p in {[str(p) for p in outside]!r}:\n    seen[p] = read(p)\n"
        f"seen['root'] = os.path.exists({str(ROOT)!r} + '/rebuild_site')\n",
        work,
    )

    assert seen.pop("root") is False
    assert seen == {str(path): "FileNotFoundError" for path in outside}


def test_files_of_the_worker_s_own_are_unreadable_even_where_shown(work, tmp_path):
    # bubblewrap's --uid alone would map the sandbox's uid onto the worker's (root here):
    # the model would own every file of the worker that it can see. It runs as another uid.
    shown = tmp_path / "shown"
    shown.mkdir()
    (shown / "private.txt").write_text("the worker's")
    (shown / "private.txt").chmod(0o600)

    seen = probe(
        READ + f"seen['private'] = read({str(shown / 'private.txt')!r})\n"
        "seen['shadow'] = read('/etc/shadow')\n"
        "seen['passwd'] = read('/etc/passwd')[:5]\n",
        work,
        readable=[shown],
    )

    assert seen == {"private": "PermissionError", "shadow": "FileNotFoundError", "passwd": "root:"}


def test_there_is_no_network_not_even_redis_on_loopback(work, redis_url):
    address = urlsplit(redis_url)
    with socket.create_connection((address.hostname, address.port), timeout=5) as outside:
        outside.sendall(b"PING\r\n")
        assert outside.recv(16).startswith(b"+PONG")

    seen = probe(
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(({address.hostname!r}, {address.port}), timeout=5)\n"
        "    seen['redis'] = 'connected'\n"
        "except OSError as error:\n"
        "    seen['redis'] = type(error).__name__\n"
        "seen['interfaces'] = sorted(name for _, name in socket.if_nameindex())\n",
        work,
    )

    assert seen["redis"] in {"ConnectionRefusedError", "OSError"}
    assert seen["interfaces"] == ["lo"]


def test_it_writes_only_in_its_own_folder_and_a_private_tmp(work, tmp_path):
    beside = tmp_path / "beside.txt"
    seen = probe(
        "def write(path):\n"
        "    try:\n"
        "        open(path, 'w').write('x')\n"
        "        return 'written'\n"
        "    except OSError as error:\n"
        "        return type(error).__name__\n"
        f"seen['own'] = write({str(work / 'result.txt')!r})\n"
        f"seen['beside'] = write({str(beside)!r})\n"
        f"seen['venv'] = write({str(Path(sys.prefix) / 'planted.py')!r})\n"
        f"seen['package'] = write({str(ROOT / 'models_app' / 'bpo' / 'planted.py')!r})\n"
        "seen['tmp'] = write('/tmp/sandbox-planted.txt')\n",
        work,
        packages=["models_app.bpo"],
    )

    assert seen == {
        "own": "written",
        "beside": "PermissionError",  # its folder is an empty stand-in, root's
        "venv": "OSError",
        "package": "OSError",
        "tmp": "written",
    }
    assert (work / "result.txt").read_text() == "x"
    assert not beside.exists()
    assert not (Path(sys.prefix) / "planted.py").exists()
    assert not (ROOT / "models_app" / "bpo" / "planted.py").exists()
    assert not Path("/tmp/sandbox-planted.txt").exists()


def test_no_secret_reaches_its_environment(work):
    env = {**os.environ, **SECRETS, "OPENBLAS_CORETYPE": "Haswell", "BLUEPYOPT_SEED": "7"}

    seen = probe("seen.update(os.environ)", work, env=env)

    assert not set(SECRETS) & set(seen)
    assert seen["OPENBLAS_CORETYPE"] == "Haswell"
    assert seen["BLUEPYOPT_SEED"] == "7"
    assert seen["HOME"] == "/tmp"


def test_it_runs_as_the_unprivileged_uid_inside_and_outside(work):
    process = Sandbox().popen(
        [
            sys.executable,
            "-c",
            "import os, time; print(os.getuid(), os.getgid(), flush=True); time.sleep(60)",
        ],
        cwd=work,
        writable=[work],
        stdout=subprocess.PIPE,
    )
    try:
        inside = process.stdout.readline().split()
        python = [pid for pid in descendants(process.pid) if _runs_python(pid, "time.sleep")]
        real = [_real_uid(pid) for pid in python]
    finally:
        kill_group(process)

    assert inside == [str(UNPRIVILEGED_ID).encode()] * 2
    assert real == [UNPRIVILEGED_ID]


def test_limits_apply_inside(work):
    limits = Limits(
        cpu_seconds=100, memory_bytes=1024**3, processes=300, file_size_bytes=10 * 1024**2
    )
    seen = probe(
        "import resource\n"
        "seen['limits'] = [resource.getrlimit(r)[0] for r in (resource.RLIMIT_CPU, "
        "resource.RLIMIT_AS, resource.RLIMIT_NPROC, resource.RLIMIT_FSIZE)]\n"
        "try:\n"
        "    block = bytearray(2 * 1024**3)\n"
        "    seen['memory'] = 'allocated'\n"
        "except MemoryError:\n"
        "    seen['memory'] = 'MemoryError'\n"
        "import signal\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "try:\n"
        "    with open('big', 'wb') as f:\n"
        "        f.write(b'0' * (11 * 1024**2))\n"
        "    seen['file'] = 'written'\n"
        "except OSError as error:\n"
        "    seen['file'] = error.strerror\n",
        work,
        limits=limits,
    )

    assert seen["limits"] == [100, 1024**3, 300, 10 * 1024**2]
    assert seen["memory"] == "MemoryError"
    assert seen["file"] == "File too large"


SPAWNER = """
import os, subprocess, sys, time
# A child in the group, and a grandchild that leaves it (a session of its own).
subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])
subprocess.Popen([sys.executable, '-c', 'import os, time; os.setsid(); time.sleep(300)'])
print('started', flush=True)
time.sleep(300)
"""


def _sandbox_tree(process: subprocess.Popen) -> set[int]:
    """The spawner's three Python processes, once the last has left the process group."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        tree = {pid for pid in descendants(process.pid) if _runs_python(pid, "time.sleep(300)")}
        if len(tree) == 3 and len({_group(pid) for pid in tree}) == 2:
            return tree
        time.sleep(0.1)
    raise AssertionError(f"the sandbox started {len(tree)} of 3 processes")


def _gone(pids: set[int], timeout: float = 10) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.05)
    return {pid for pid in pids if alive(pid)}


def test_cancel_kills_the_whole_tree_even_a_process_that_left_the_group(work):
    process = Sandbox().popen(
        [sys.executable, "-c", SPAWNER], cwd=work, writable=[work], stdout=subprocess.PIPE
    )
    assert process.stdout.readline() == b"started\n"
    tree = _sandbox_tree(process)  # one of them left the group the cancel signals

    # What Cancel does (nsg_app.local.runner, the analysis engine, the emulator).
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)

    assert _gone(tree | descendants(process.pid)) == set()


def test_the_sandbox_dies_with_the_process_that_started_it(work):
    parent_code = (
        "import subprocess, sys, time\n"
        "from models_app.bpo.sandbox import Sandbox\n"
        f"p = Sandbox().popen([sys.executable, '-c', {SPAWNER!r}], cwd={str(work)!r}, "
        f"writable=[{str(work)!r}], stdout=sys.stdout)\n"
        "time.sleep(300)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", parent_code], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert parent.stdout.readline() == b"started\n"
        tree = _sandbox_tree(parent)

        parent.kill()  # SIGKILL: no clean-up code of the parent runs
        parent.wait(timeout=10)

        assert _gone(tree) == set()
    finally:
        kill_group(parent)


def test_check_runs_true_and_says_when_the_sandbox_is_off():
    Sandbox().check()
    assert "OFF" in Sandbox("off").description


def _runs_python(pid: int, text: str) -> bool:
    """True for a Python process (not bubblewrap, whose command line holds it all) of text."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return argv[0] == sys.executable.encode() and text.encode() in b" ".join(argv)


def _real_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


def _group(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[2])


@pytest.fixture
def nobody_s_folder():
    # pytest's tmp_path lies in a folder only root may enter.
    folder = Path(tempfile.mkdtemp(prefix="sandbox-nobody-"))
    folder.chmod(0o755)
    os.chown(folder, UNPRIVILEGED_ID, UNPRIVILEGED_ID)
    yield folder
    shutil.rmtree(folder)


def test_a_worker_that_is_not_root_gets_the_same_confinement(nobody_s_folder):
    # The usual deployment: the worker runs as an ordinary user and bubblewrap makes the
    # user namespace itself. Played here by Debian's Python run as nobody.
    work = nobody_s_folder
    inner = (
        "import os, socket; print(os.getuid(), sorted(n for _, n in socket.if_nameindex()), "
        f"os.path.exists({str(ROOT / 'pyproject.toml')!r}))"
    )
    outer = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
        "from models_app.bpo.sandbox import Sandbox\n"
        f"r = Sandbox().run(['/usr/bin/python3', '-c', {inner!r}], cwd={str(work)!r}, "
        f"writable=[{str(work)!r}], capture_output=True, timeout=60)\n"
        "print(r.returncode, r.stdout.decode().strip(), r.stderr.decode().strip())\n"
    )
    as_nobody = [
        "setpriv",
        f"--reuid={UNPRIVILEGED_ID}",
        f"--regid={UNPRIVILEGED_ID}",
        "--clear-groups",
        "/usr/bin/python3",
        "-c",
        outer,
    ]
    result = subprocess.run(as_nobody, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"0 {UNPRIVILEGED_ID} ['lo'] False"


def test_trusted_code_never_reads_a_sandbox_output_through_a_link(work):
    secret = Path(os.environ["VAR_DIR"]) / "sandbox-secret-link.txt"
    secret.write_text("the site's secret")
    result = Sandbox().run(
        [sys.executable, "-c", f"import os; os.symlink({str(secret)!r}, 'result.json')"],
        cwd=work,
        writable=[work],
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert (work / "result.json").read_text() == "the site's secret"  # a plain open follows

    with pytest.raises(OSError):
        open_written_inside(work / "result.json")
