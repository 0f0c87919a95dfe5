"""Run a model's code confined: every process that runs code that came with a model.

A model brings code: opt_neuron.py, model/*.py, the pickled checkpoint (unpickling runs
code), the .mod files (nrnivmodl compiles them, VERBATIM blocks included, and that C runs
in whatever loads the library). All of it runs through this module, from the site and from
the command line alike: the local runner (``python init.py``), the analysis's simulation
process, nrnivmodl, the NSG emulator's batch, the import check.

The API, for a caller that starts such a process::

    from models_app.bpo.sandbox import Limits, Sandbox

    sandbox = Sandbox.named("bwrap")              # or "off"; from the SANDBOX setting/--sandbox
    process = sandbox.popen(
        [sys.executable, "-m", "analysis_app.engine.simulation", request],
        cwd=run_folder,                           # must lie in a writable or readable folder
        writable=[work_folder],                   # the run's own folder(s): nothing else is
        packages=["analysis_app.engine"],         # project packages imported inside (read-only)
        env=environment,                          # filtered through ALLOWED_ENVIRONMENT
        limits=Limits.for_runtime(seconds, threads=cores),   # default: Limits()
        stdout=log, stderr=subprocess.STDOUT,     # anything else Popen takes
    )
    code = sandbox.exit_code(process.wait())      # -N when killed by signal N, as Popen says
    kill_group(process)                           # at the end, or to cancel: the whole sandbox
    result = sandbox.run([...], cwd=..., writable=[...], timeout=60, capture_output=True)
    sandbox.check()                               # raises SandboxError unless `true` runs

    with open_written_inside(work_folder / "result.json") as stream:   # never through a link
        ...

``SandboxError`` (a BpoError) says what is missing (bubblewrap, util-linux) and how to fix it.
An import check that loads a model in a child process calls ``Sandbox.named(mode).run(...)``
with the model's folder writable and ``packages=["models_app.bpo"]``.

``popen`` always starts the process in a session (process group) of its own: killing that
group (``os.killpg(process.pid, SIGKILL)``) kills everything inside, even a process that
made a session of its own, because the group's leader is bubblewrap and its death ends the
sandbox's PID namespace. The sandbox also dies with the process that started it.

What the sandboxed process sees (mode "bwrap"): the system (/usr, the /bin and /lib links,
a few files of /etc), the Python installation (``sys.base_prefix``) and the virtual
environment (``sys.prefix``) read-only, the project packages it names read-only (never the
checkout: no .env, var/, .git), the ``writable`` folders, a private /tmp, and nothing else:
no database, media, keys, other runs. No network (a namespace of its own with loopback
only; ``share_network=True`` keeps the machine's, for runs on an ipyparallel cluster and
its engines, which must reach the controller), no other process (PID namespace), no System V IPC, an environment from an allow-list
(no secrets), limits on memory, processes, file size and CPU time, an unprivileged uid.

Mode "off" runs the command as before, unconfined, as the worker's user with its whole
environment: only for a single-user machine whose user trusts every model.

Django-free, like the rest of ``models_app.bpo``, so the runners (which also run without
Django) and the site use the same code.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from models_app.bpo.errors import BpoError

BWRAP = "bwrap"
OFF = "off"
MODES = (BWRAP, OFF)

# When the worker runs as root, the model runs as this real, unprivileged uid and gid
# (nobody/nogroup on Debian). See _root_chain for why a real uid rather than bwrap --uid.
UNPRIVILEGED_ID = 65534

# What the sandboxed process may inherit from the caller's environment. Never a secret:
# SECRET_KEY, CREDENTIALS_KEY, DATABASE_URL, REDIS_URL, S3_*, NSG_* are not listed.
ALLOWED_ENVIRONMENT = frozenset(
    {
        "LANG",
        "LANGUAGE",
        "TZ",
        "PYTHONPATH",
        "PYTHONUNBUFFERED",
        "PYTHONHASHSEED",
        "PYTHONDONTWRITEBYTECODE",
        "MPLBACKEND",
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "NUMEXPR_NUM_THREADS",
        # NEURON's start-up options ("-nogui": no display warnings in its output).
        "NEURON_MODULE_OPTIONS",
        # Without these OpenBLAS picks kernels that give wrong numerics on some CPUs.
        "OPENBLAS_CORETYPE",
        "OPENBLAS_L2_SIZE",
        # A run on an ipyparallel cluster: the HBP opt_neuron.py scripts read these.
        "USEIPYP",
        "IPYTHONDIR",
        "IPYTHON_PROFILE",
        # nrnivmodl's compiler: models_app/bpo/nrn_cxx.py (NEURON's headers precompiled).
        "CXX",
    }
)
# Prefixes of further names allowed: locales, BluePyOpt's seed, the local run's injection,
# nrn_cxx.py's settings.
ALLOWED_ENVIRONMENT_PREFIXES = ("LC_", "BLUEPYOPT_", "REBUILD_LOCAL_", "REBUILD_NRN_CXX_")

# The files of /etc a model's processes need: the dynamic linker's cache, user and group
# names, time zone, the C compiler's alternatives (nrnivmodl runs cc), fonts (matplotlib).
# Not /etc as a whole: it holds the machine's other configuration and, under root, keys.
ETC_FILES = (
    "alternatives",
    "fonts",
    "group",
    # Host names (ipyparallel looks up this machine's addresses in cluster runs).
    "hosts",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "nsswitch.conf",
    "os-release",
    "passwd",
    "timezone",
)
# Top-level names that are links into /usr on a merged-/usr system (folders otherwise).
SYSTEM_LINKS = ("bin", "lib", "lib32", "lib64", "libx32", "sbin")

# Memory: the address space of each process (RLIMIT_AS). Measured (bench/sandbox_overhead.py,
# 2 CPUs): a process with NEURON, NumPy, eFEL, BluePyOpt and matplotlib loaded that has run a
# simulation peaks at about 300 MiB of address space for 90 MiB resident; OpenBLAS reserves
# more per thread on machines with many cores. 8 GiB leaves that room and more for big
# morphologies, and still stops a runaway process long before it takes the machine.
DEFAULT_MEMORY_BYTES = 8 * 1024**3
# Processes and threads of the sandbox's uid (RLIMIT_NPROC counts both): a run starts one
# evaluation process per core, each with a few threads.
DEFAULT_PROCESSES = 1024
DEFAULT_FILE_SIZE_BYTES = 4 * 1024**3
# CPU time is per process: a process can use at most its wall time per thread; this is a
# backstop behind the runners' own wall-clock limits.
CPU_SECONDS_MARGIN = 60


class SandboxError(BpoError):
    summary = "The sandbox that confines model code cannot run"


@dataclass(frozen=True)
class Limits:
    """Resource limits of every process in the sandbox (None: no limit)."""

    cpu_seconds: int | None = None
    memory_bytes: int | None = DEFAULT_MEMORY_BYTES
    processes: int | None = DEFAULT_PROCESSES
    file_size_bytes: int | None = DEFAULT_FILE_SIZE_BYTES

    @classmethod
    def for_runtime(cls, seconds: float, *, threads: int = 1) -> Limits:
        """Limits for a command that may run ``seconds`` of wall time with ``threads``."""
        return cls(cpu_seconds=int(seconds * max(1, threads)) + CPU_SECONDS_MARGIN)

    def prlimit_options(self) -> list[str]:
        options = []
        for option, value in (
            ("--cpu", self.cpu_seconds),
            ("--as", self.memory_bytes),
            ("--nproc", self.processes),
            ("--fsize", self.file_size_bytes),
        ):
            if value is not None:
                options.append(f"{option}={int(value)}")
        return options


@dataclass(frozen=True)
class Sandbox:
    """How model code runs: ``mode`` "bwrap" (confined) or "off" (as the worker)."""

    mode: str = BWRAP
    unprivileged_id: int = UNPRIVILEGED_ID

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"sandbox mode must be one of {', '.join(MODES)}; got {self.mode!r}")

    @classmethod
    def named(cls, mode: str) -> Sandbox:
        return cls(mode=mode)

    @property
    def enabled(self) -> bool:
        return self.mode == BWRAP

    @property
    def description(self) -> str:
        if self.enabled:
            return "bubblewrap: model code runs without network, secrets or other files"
        return (
            "OFF: model code runs unconfined, as the worker's user, with its files and "
            "secrets (only for a single-user machine whose user trusts every model)"
        )

    # -- the command line --

    def command(
        self,
        argv: Sequence[str],
        *,
        cwd: str | os.PathLike[str],
        writable: Iterable[str | os.PathLike[str]] = (),
        readable: Iterable[str | os.PathLike[str]] = (),
        packages: Iterable[str] = (),
        limits: Limits | None = None,
        share_network: bool = False,
    ) -> list[str]:
        """``argv`` wrapped in the sandbox (unchanged when it is off).

        ``share_network`` keeps this machine's network (only for runs on an ipyparallel
        cluster and its engines, which must reach the controller; see the README).
        """
        argv = [os.fspath(part) for part in argv]
        if not self.enabled:
            return argv
        argv[0] = _through_real_prefix(argv[0])
        bwrap, prlimit = _program("bwrap"), _program("prlimit")
        limits = limits or Limits()
        mounts = _Mounts()
        mounts.system()
        for folder in _python_folders():
            mounts.bind(folder, read_only=True)
        for package in packages:
            for path in _package_paths(package):
                mounts.bind(path, read_only=True)
        for path in readable:
            mounts.bind(Path(path), read_only=True)
        for path in writable:
            mounts.bind(Path(path), read_only=False)
        cwd = Path(cwd).resolve()
        if not mounts.covers(cwd):
            raise ValueError(f"the working folder {cwd} is not in the sandbox")
        namespaces = [
            "--unshare-pid",
            "--unshare-ipc",
            *([] if share_network else ["--unshare-net"]),
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--die-with-parent",
            "--hostname",
            # A cluster's engine reports its host to the job page ("engine 0 on <host>"):
            # it is on this machine's network anyway, so it keeps this machine's name.
            socket.gethostname() if share_network else "sandbox",
        ]
        inner = [*mounts.options, "--chdir", str(cwd)]
        if os.geteuid() == 0:
            chain = _root_chain(self.unprivileged_id)
            return [prlimit, *limits.prlimit_options(), bwrap, *namespaces, *inner, *chain, *argv]
        identity = ["--unshare-user", "--disable-userns", "--cap-drop", "ALL"]
        return [prlimit, *limits.prlimit_options(), bwrap, *namespaces, *identity, *inner, *argv]

    def environment(self, env: Mapping[str, str] | None = None) -> dict[str, str]:
        """The sandboxed process's environment: ``env`` (default os.environ) filtered.

        Off, the environment goes through whole, as before.
        """
        env = dict(os.environ if env is None else env)
        if not self.enabled:
            return env
        kept = {
            name: value
            for name, value in env.items()
            if name in ALLOWED_ENVIRONMENT or name.startswith(ALLOWED_ENVIRONMENT_PREFIXES)
        }
        kept["PATH"] = os.pathsep.join(
            dict.fromkeys([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"])
        )
        kept["HOME"] = "/tmp"
        kept["TMPDIR"] = "/tmp"
        kept.setdefault("LANG", "C.UTF-8")
        return kept

    def prepare(self, writable: Iterable[str | os.PathLike[str]]) -> None:
        """Make the ``writable`` folders the sandboxed uid's (only when the worker is root)."""
        if self.enabled and os.geteuid() == 0:
            for folder in writable:
                _chown_tree(Path(folder), self.unprivileged_id, self.unprivileged_id)

    def reclaim(self, folders: Iterable[str | os.PathLike[str]]) -> None:
        """Give folders the sandbox wrote back to the worker's uid (when it is root)."""
        if self.enabled and os.geteuid() == 0:
            for folder in folders:
                _chown_tree(Path(folder), os.getuid(), os.getgid())

    # -- starting processes --

    def popen(
        self,
        argv: Sequence[str],
        *,
        cwd: str | os.PathLike[str],
        writable: Iterable[str | os.PathLike[str]] = (),
        readable: Iterable[str | os.PathLike[str]] = (),
        packages: Iterable[str] = (),
        env: Mapping[str, str] | None = None,
        limits: Limits | None = None,
        share_network: bool = False,
        **popen_options,
    ) -> subprocess.Popen:
        """Start ``argv`` in the sandbox, in a process group of its own; see the docstring."""
        writable = [Path(path) for path in writable]
        command = self.command(
            argv,
            cwd=cwd,
            writable=writable,
            readable=readable,
            packages=packages,
            limits=limits,
            share_network=share_network,
        )
        self.prepare(writable)
        popen_options.pop("start_new_session", None)
        popen_options.pop("preexec_fn", None)
        try:
            return subprocess.Popen(
                command,
                cwd=cwd,
                env=self.environment(env),
                start_new_session=True,
                # bubblewrap's --die-with-parent takes effect only once bubblewrap has set
                # itself up: a starter killed in between would leave the sandbox running.
                preexec_fn=die_with_parent,
                **popen_options,
            )
        except FileNotFoundError as error:
            raise SandboxError([f"{error.filename or argv[0]} was not found."]) from None

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = None,
        input: bytes | str | None = None,
        capture_output: bool = False,
        **options,
    ) -> subprocess.CompletedProcess:
        """Like subprocess.run; on ``timeout`` the whole sandbox is killed, then it raises."""
        if capture_output:
            options["stdout"] = options["stderr"] = subprocess.PIPE
        if input is not None:
            options["stdin"] = subprocess.PIPE
        process = self.popen(argv, **options)
        try:
            stdout, stderr = process.communicate(input, timeout=timeout)
        except BaseException:
            kill_group(process)
            raise
        finally:
            kill_group(process)
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

    def check(self, timeout: float = 30.0) -> None:
        """Run ``true`` in the sandbox; SandboxError says what is wrong when it fails."""
        if not self.enabled:
            return
        folder = Path("/tmp")
        try:
            result = self.run(
                ["true"], cwd=folder, readable=[], timeout=timeout, capture_output=True
            )
        except subprocess.TimeoutExpired:
            raise SandboxError(
                [f"`true` did not finish in the sandbox within {timeout:g} s."]
            ) from None
        if result.returncode != 0:
            said = result.stderr.decode("utf-8", "replace").strip()
            raise SandboxError(
                [f"`true` exited with code {result.returncode} in the sandbox: {said}"]
            )

    def exit_code(self, returncode: int | None) -> int | None:
        """The command's own exit code, as if it had run without the sandbox.

        bubblewrap exits with 128 + N when the command was killed by signal N; Popen says
        -N for a process killed by N. (A command that exits with 129-192 itself reads as
        killed: the shell's convention too.)
        """
        if self.enabled and returncode is not None and 128 < returncode <= 128 + 64:
            return -(returncode - 128)
        return returncode

    def signal_command(self, process: subprocess.Popen, signum: int) -> None:
        """Send ``signum`` to the command's processes in the group, not to bubblewrap.

        For a grace period before the kill (SIGTERM, as Slurm does): bubblewrap would die of
        it at once and take the sandbox with it, leaving the command no time to handle it.
        """
        if not self.enabled:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signum)
            return
        bwrap = shutil.which("bwrap")
        for pid in group_members(process.pid):
            try:
                if os.path.realpath(f"/proc/{pid}/exe") == bwrap:
                    continue
                os.kill(pid, signum)
            except (ProcessLookupError, PermissionError, OSError):
                continue


def group_members(group: int) -> list[int]:
    """The live processes of process group ``group``, as /proc shows them."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"{entry.path}/stat", encoding="ascii", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(group) and fields[0] != "Z":
            members.append(int(entry.name))
    return members


_PR_SET_PDEATHSIG = 1  # linux/prctl.h
# Looked up before any fork: a preexec_fn must not load libraries in the child. Linux only
# (elsewhere there is no bubblewrap either, and children do not die with their parent).
_prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)


def die_with_parent() -> None:
    """A ``preexec_fn``: the child is SIGKILLed when the process that started it dies.

    For children in sessions of their own (so that each stops with its children), which a
    SIGKILL of their starter does not reach: `make run`'s parts, and the analysis engine and
    figure export a Celery worker starts (the sweep gives a dead worker's analysis to another
    worker, so the old engine must not go on), and every sandbox (``Sandbox.popen``). Local
    runs' runners do not use it: they outlive a worker's restart on purpose, and the worker
    finds them again.
    """
    if _prctl is None:
        return
    parent = os.getppid()
    if _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def kill_group(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGKILL the process group of a process started by ``popen``, and reap it.

    Killing bubblewrap, the group's leader, ends the sandbox's PID namespace with every
    process in it, including one that left the group.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout)


def open_written_inside(path: str | os.PathLike[str]):
    """Open, for reading, a file that sandboxed code could have written or replaced.

    Trusted code that reads a sandbox's outputs must not follow a link the model left in
    place of a file (``result.json -> /srv/site/.env``): it would read the site's file with
    the worker's rights. Raises OSError for a link or anything but a regular file.
    """
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise OSError(f"{path} is not a regular file")
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def read_changed(
    inside: Path, seen: tuple[int, int] | None, *, limit: int = 1024 * 1024
) -> tuple[tuple[int, int] | None, bytes | None]:
    """The content of a file the sandbox writes, if it changed since ``seen``.

    Returns (what was seen now, the content or None). The sandboxed process cannot write
    outside its folders, so a file it keeps up to date for a reader outside (a progress
    file) is written inside, and the caller copies it out. Never follows a link; ignores
    anything that is not a regular file of at most ``limit`` bytes.
    """
    try:
        descriptor = os.open(inside, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return seen, None
    try:
        status = os.fstat(descriptor)
        now = (status.st_mtime_ns, status.st_size)
        if not stat.S_ISREG(status.st_mode) or status.st_size > limit or now == seen:
            return seen, None
        with os.fdopen(descriptor, "rb", closefd=False) as stream:
            content = stream.read(limit + 1)
        if len(content) > limit:
            return seen, None
        return now, content
    finally:
        os.close(descriptor)


# --- the pieces of the command line -------------------------------------------------------


def _root_chain(unprivileged_id: int) -> list[str]:
    """What runs inside bubblewrap, before the command, when the worker is root.

    Why not ``bwrap --unshare-user --uid 65534`` alone: run by real root, bubblewrap maps the
    sandbox's uid onto uid 0 outside, so the "unprivileged" process is still root to the
    kernel: it owns every root-owned file it can see (0600 keys included) and RLIMIT_NPROC
    does not apply to it (the kernel exempts uid 0). And why not drop to an unprivileged
    uid before bubblewrap: unprivileged user namespaces work here, but then bubblewrap
    cannot reach what the sandbox must see behind root-only folders (the Python
    installation under /root/.pyenv on the build machines: /root is 0700).

    So bubblewrap runs as root, without a user namespace, and builds the mounts and the PID,
    IPC, network and UTS namespaces; then setpriv drops to a real unprivileged uid and gid
    (no groups, no capabilities, no new privileges) and ``unshare --user`` puts the model
    in a user namespace of its own mapped onto that same uid. The model's processes are
    uid 65534 to the kernel: root-owned files are out of reach even where visible, and
    RLIMIT_NPROC counts them.
    """
    identity = str(unprivileged_id)
    return [
        _program("setpriv"),
        f"--reuid={identity}",
        f"--regid={identity}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
        _program("unshare"),
        "--user",
        f"--map-user={identity}",
        f"--map-group={identity}",
        "--",
    ]


class _Mounts:
    """bubblewrap's mount options; each path is mounted at the same place inside."""

    def __init__(self) -> None:
        self.options: list[str] = []
        self.targets: list[tuple[Path, bool]] = []
        self._folders: set[Path] = {Path("/")}

    def system(self) -> None:
        self.options += ["--ro-bind", "/usr", "/usr"]
        self.targets.append((Path("/usr"), True))
        for name in SYSTEM_LINKS:
            path = Path("/") / name
            if path.is_symlink():
                self.options += ["--symlink", os.readlink(path), str(path)]
            elif path.is_dir():
                self.bind(path, read_only=True)
        self._folder(Path("/etc"))
        for name in ETC_FILES:
            path = Path("/etc") / name
            if path.exists():
                self.options += ["--ro-bind", str(path), str(path)]
        # 1777 like a real /tmp: bubblewrap makes a tmpfs 0755 and root-owned otherwise.
        self.options += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]
        # POSIX semaphores and shared memory (multiprocessing's locks) live in /dev/shm.
        self.options += ["--perms", "1777", "--tmpfs", "/dev/shm"]
        # The CPU topology only, read-only: without it, importing NumPy and NEURON took
        # 150-250 ms longer per process (measured; their thread pools are sized from it).
        cpus = Path("/sys/devices/system/cpu")
        if cpus.is_dir():
            self.bind(cpus, read_only=True)
        self._folders.update({Path("/proc"), Path("/dev"), Path("/tmp")})

    def bind(self, path: Path, *, read_only: bool) -> None:
        if not path.exists():
            raise ValueError(f"{path} does not exist, so it cannot be put in the sandbox")
        path = path.resolve()
        if any(path == target or target in path.parents for target, _ in self.targets):
            if read_only:
                return  # already visible
        self._folder(path.parent)
        self.options += ["--ro-bind" if read_only else "--bind", str(path), str(path)]
        self.targets.append((path, read_only))

    def covers(self, path: Path) -> bool:
        """True when ``path`` is visible inside: mounted, or in the private /tmp."""
        tmp = Path("/tmp")
        return (
            path == tmp
            or tmp in path.parents
            or any(path == target or target in path.parents for target, _ in self.targets)
        )

    def _mounted(self, path: Path) -> bool:
        return any(path == target or target in path.parents for target, _ in self.targets)

    def _folder(self, path: Path) -> None:
        # bubblewrap makes missing parents 0700: create them 0755 so the unprivileged uid
        # can reach what is mounted below them.
        missing = []
        while path not in self._folders and not self._mounted(path):
            missing.append(path)
            path = path.parent
        for folder in reversed(missing):
            self.options += ["--perms", "0755", "--dir", str(folder)]
            self._folders.add(folder)


def _through_real_prefix(program: str) -> str:
    """The virtual environment's interpreter named through the venv's real folder.

    The sandbox mounts the venv where it really is; a venv reached through a link (a copy
    of the checkout sharing its .venv) names a path that is not there. The venv's own
    folder is kept (not the base interpreter's), so Python still finds pyvenv.cfg.
    """
    prefix = Path(sys.prefix)
    try:
        relative = Path(program).relative_to(prefix)
    except ValueError:
        return program
    return str(prefix.resolve() / relative)


def _python_folders() -> list[Path]:
    """The Python installation and the virtual environment, and where their links lead."""
    folders = [Path(sys.base_prefix), Path(sys.prefix), Path(sys.executable).resolve().parent]
    unique: list[Path] = []
    for folder in folders:
        folder = folder.resolve()
        if folder == Path("/usr") or Path("/usr") in folder.parents:
            continue  # the system's Python: already there
        if not any(folder == seen or seen in folder.parents for seen in unique):
            unique.append(folder)
    return unique


def _package_paths(name: str) -> list[Path]:
    """A project package's folder and its parents' __init__.py files, as Python finds them.

    The editable install maps the packages onto the checkout; only these paths of it are
    mounted, so the checkout's other files (.env, var/, .git) stay out of sight.
    """
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"{name} is not a package")
    paths = [Path(location) for location in spec.submodule_search_locations]
    parts = name.split(".")
    for depth in range(1, len(parts)):
        parent = importlib.util.find_spec(".".join(parts[:depth]))
        if parent is not None and parent.origin and parent.has_location:
            paths.append(Path(parent.origin))
    return paths


def _program(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        package = "bubblewrap" if name == "bwrap" else "util-linux"
        raise SandboxError(
            [
                f"{name} was not found. Install it (Debian: apt-get install {package}), or, "
                "on a single-user machine whose user trusts every model, turn the sandbox "
                "off (SANDBOX=off with DEBUG on, SANDBOX=off-trust-all-models otherwise; "
                "--sandbox off on the command line)."
            ]
        )
    return found


def _chown_tree(folder: Path, uid: int, gid: int) -> None:
    # Never follows a link: the sandbox may have left links to files that are not its own.
    os.chown(folder, uid, gid, follow_symlinks=False)
    for root, folders, files in os.walk(folder):
        for name in folders + files:
            with contextlib.suppress(FileNotFoundError):
                os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)
