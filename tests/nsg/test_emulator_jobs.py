"""Jobs run for real in the emulator, driven through the client."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from nsg_app.nsg import JobFile, NotFound, NsgClient
from tests.fixtures.processes import host_pids
from tests.nsg.packages import (
    CRASHING_SCRIPT,
    HELLO_SCRIPT,
    LEAK_MOD,
    NEURON_SCRIPT,
    SLEEPING_SCRIPT,
    package,
    zip_bytes,
)
from tests.nsg.polling import wait_for_terminal, wait_until


def results_of(client: NsgClient, status) -> dict[str, bytes]:
    contents = {}
    for job_file in client.list_results(status):
        buffer = io.BytesIO()
        client.download(job_file, buffer)
        contents[job_file.filename] = buffer.getvalue()
    return contents


def tar_members(tarball: bytes) -> dict[str, bytes | None]:
    with tarfile.open(fileobj=io.BytesIO(tarball)) as tar:
        return {
            member.name: tar.extractfile(member).read() if member.isfile() else None
            for member in tar.getmembers()
        }


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:  # a zombie is not running any more
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def working_file(client: NsgClient, status, name: str) -> JobFile | None:
    return next((f for f in client.list_working_dir(status) if f.filename == name), None)


def read_working_file(client: NsgClient, status, name: str) -> bytes:
    job_file = working_file(client, status, name)
    if job_file is None:
        return b""
    buffer = io.BytesIO()
    client.download(job_file, buffer, check_length=False)
    return buffer.getvalue()


@pytest.mark.slow
def test_bluepyopt_job_compiles_mechanisms_and_runs(client):
    zip_file = package(NEURON_SCRIPT, top="W_20240502", **{"mechanisms/testleak.mod": LEAK_MOD})
    status = client.submit(
        "BLUEPYOPT_EXPANSE",
        zip_file,
        vparams={"filename_": "init.py", "number_cores_": 2, "number_nodes_": 1, "runtime_": 2},
        metadata={"clientJobId": "bpo-1"},
    )
    status = wait_for_terminal(client, status)
    assert (status.stage, status.terminal, status.failed) == ("COMPLETED", True, False)
    results = results_of(client, status)
    assert set(results) == {"STDOUT", "STDERR", "output.tar.gz"}
    assert "mechanism loaded, g=0.0005" in results["STDOUT"].decode()
    members = tar_members(results["output.tar.gz"])
    assert members["./W_20240502/simulated.txt"] == b"testleak g=0.0005\n"
    assert "./W_20240502/x86_64/libnrnmech.so" in members
    assert members["./inputfile"] == zip_file
    assert members["./stdout.txt"] == results["STDOUT"]
    assert b"user_input_dir=W_20240502" in members["./_JOBINFO.TXT"]
    assert b"fname=init.py\nnrnivmodloption=1\nnodes=1\n" in members["./scheduler.conf"]


def test_crashing_script_completes_with_traceback_in_stderr(client):
    status = client.submit("PY_EXPANSE", package(CRASHING_SCRIPT), vparams={"filename_": "init.py"})
    status = wait_for_terminal(client, status)
    assert (status.stage, status.failed) == ("COMPLETED", False)
    results = results_of(client, status)
    assert "about to fail" in results["STDOUT"].decode()
    stderr = results["STDERR"].decode()
    assert "Traceback (most recent call last)" in stderr
    assert "RuntimeError: the model exploded" in stderr


def test_subdirname_and_command_line_options(client):
    zip_file = zip_bytes(
        {"top/code/run.py": "import sys\nprint('args', sys.argv[1:])\n", "top/README": "x"}
    )
    vparams = {"filename_": "run.py", "subdirname_": "code", "cmdlineopts_": "-nogui --n 2"}
    status = wait_for_terminal(client, client.submit("PY_EXPANSE", zip_file, vparams=vparams))
    assert "args ['-nogui', '--n', '2']" in results_of(client, status)["STDOUT"].decode()


def test_runtime_limit_kills_the_process_tree(client):
    # runtime_ 0.1 h is 0.72 s at the tests' time scale.
    zip_file = package(SLEEPING_SCRIPT)
    status = client.submit(
        "PY_EXPANSE", zip_file, vparams={"filename_": "init.py", "runtime_": 0.1}
    )
    status = wait_for_terminal(client, status, timeout=30)
    assert (status.stage, status.failed) == ("COMPLETED", False)
    results = results_of(client, status)
    stderr = results["STDERR"].decode()
    assert "slurmstepd: error: *** JOB " in stderr
    assert "DUE TO TIME LIMIT ***" in stderr
    members = tar_members(results["output.tar.gz"])
    assert b"DUE TO TIME LIMIT" in members["./scheduler_stderr.txt"]
    namespace, *pids = members["./pids.txt"].decode().split()
    assert namespace.startswith("pid:[") and len(pids) == 2
    inner = [int(pid) for pid in pids]
    wait_until(lambda: not host_pids(namespace, inner), timeout=5, what="processes to end")


def test_walltime_fault_cancels_the_next_job(emulator, client):
    emulator.add_fault("alice", "walltime", count="1", seconds="0")
    status = client.submit("PY_EXPANSE", package(HELLO_SCRIPT), vparams={"filename_": "init.py"})
    status = wait_for_terminal(client, status)
    assert (status.stage, status.failed) == ("COMPLETED", False)
    assert "DUE TO TIME LIMIT" in results_of(client, status)["STDERR"].decode()


def test_zip_without_single_top_folder_fails_at_staging(client):
    zip_file = zip_bytes({"init.py": HELLO_SCRIPT, "other/readme.txt": "x"})
    status = client.submit("PY_EXPANSE", zip_file, vparams={"filename_": "init.py"})
    assert status.stage == "QUEUE"  # accepted: NSG only unpacks the zip when staging
    status = wait_for_terminal(client, status)
    assert (status.stage, status.terminal, status.failed) == ("INPUTSTAGING", True, True)
    assert "exactly one top-level folder" in status.messages[-1].text
    assert client.list_results(status) == []


@pytest.mark.parametrize(
    "files",
    [
        {"top/../escape.py": "x"},
        {"/top/init.py": "x"},
    ],
)
def test_unsafe_zip_fails_at_staging(client, files):
    status = client.submit("PY_EXPANSE", zip_bytes(files), vparams={"filename_": "init.py"})
    status = wait_for_terminal(client, status)
    assert (status.stage, status.failed) == ("INPUTSTAGING", True)
    assert "unsafe path" in status.messages[-1].text


def test_not_a_zip_fails_at_staging(client):
    status = client.submit("PY_EXPANSE", b"not a zip", vparams={"filename_": "init.py"})
    status = wait_for_terminal(client, status)
    assert (status.stage, status.failed) == ("INPUTSTAGING", True)


def test_staging_failure_fault(emulator, client):
    emulator.add_fault("alice", "staging_failure", count="1")
    failed = client.submit("PY_EXPANSE", package(HELLO_SCRIPT), vparams={"filename_": "init.py"})
    assert wait_for_terminal(client, failed).failed
    fine = client.submit("PY_EXPANSE", package(HELLO_SCRIPT), vparams={"filename_": "init.py"})
    assert not wait_for_terminal(client, fine).failed


def test_cancel_stops_a_running_job_and_deletes_it(client):
    status = client.submit(
        "PY_EXPANSE", package(SLEEPING_SCRIPT), vparams={"filename_": "init.py", "runtime_": 2}
    )
    wait_until(
        lambda: b"started" in read_working_file(client, status, "stdout.txt"),
        what="the script to start",
    )
    running = client.job_status(status)
    assert (running.stage, running.terminal) == ("SUBMITTED", False)
    names = {f.filename for f in client.list_working_dir(running)}
    assert {"inputfile", "stdout.txt", "stderr.txt", "_COMMANDLINE", "pids.txt"} <= names
    assert all(f.output_document_id == 0 for f in client.list_working_dir(running))
    namespace, *inner = read_working_file(client, status, "pids.txt").decode().split()
    pids = host_pids(namespace, [int(pid) for pid in inner])
    assert len(pids) == 2 and all(alive(pid) for pid in pids)
    client.delete_job(status)
    wait_until(lambda: not any(alive(pid) for pid in pids), timeout=5, what="processes to end")
    with pytest.raises(NotFound):
        client.job_status(status)
    assert status.handle not in [job.handle for job in client.list_jobs()]


def test_list_jobs_returns_full_statuses(client):
    status = client.submit(
        "PY_EXPANSE",
        package(HELLO_SCRIPT),
        vparams={"filename_": "init.py"},
        metadata={"clientJobId": "listed"},
    )
    wait_for_terminal(client, status)
    [listed] = [job for job in client.list_jobs() if job.handle == status.handle]
    assert listed.client_job_id == "listed"
    assert listed.stage == "COMPLETED" and listed.terminal
    assert listed.results_url == status.results_url
    assert len(listed.messages) == 7


def test_list_tools(client):
    assert "BLUEPYOPT_EXPANSE" in [tool.tool_id for tool in client.list_tools()]


def test_working_dir_file_download_of_a_finished_job_is_not_found(client):
    status = wait_for_terminal(
        client,
        client.submit("PY_EXPANSE", package(HELLO_SCRIPT), vparams={"filename_": "init.py"}),
    )
    assert client.list_working_dir(status) == []
    gone = JobFile(status.handle, "stdout.txt", 0, "", 0, f"{status.working_dir_url}/stdout.txt")
    with pytest.raises(NotFound):
        client.download(gone, io.BytesIO())
