"""Jobs and results outlive an emulator restart when it has a data dir."""

from __future__ import annotations

import io

from tests.nsg.packages import HELLO_SCRIPT, SLEEPING_SCRIPT, package
from tests.nsg.polling import wait_for_terminal, wait_until


def test_restart_keeps_jobs_and_results_and_ends_lost_runs(emulator_factory, tmp_path):
    first = emulator_factory(tmp_path / "data")
    with first.client() as nsg:
        done = nsg.submit(
            "PY_EXPANSE",
            package(HELLO_SCRIPT),
            vparams={"filename_": "init.py"},
            metadata={"clientJobId": "kept"},
        )
        done = wait_for_terminal(nsg, done)
        stdout_before = io.BytesIO()
        [stdout_file] = [f for f in nsg.list_results(done) if f.filename == "STDOUT"]
        nsg.download(stdout_file, stdout_before)
        running = nsg.submit(
            "PY_EXPANSE", package(SLEEPING_SCRIPT), vparams={"filename_": "init.py", "runtime_": 2}
        )
        wait_until(
            lambda: "pids.txt" in [f.filename for f in nsg.list_working_dir(running)],
            what="the script to start",
        )
    first.stop()

    second = emulator_factory(tmp_path / "data")
    assert second.base_url != first.base_url
    with second.client() as nsg:
        jobs = {job.handle: job for job in nsg.list_jobs()}
        assert set(jobs) == {done.handle, running.handle}
        kept = jobs[done.handle]
        assert kept.client_job_id == "kept" and kept.stage == "COMPLETED"
        assert kept.self_url.startswith(second.base_url)  # URLs follow the new address
        results = {f.filename: f for f in nsg.list_results(kept)}
        assert results["STDOUT"].output_document_id == stdout_file.output_document_id
        stdout_after = io.BytesIO()
        nsg.download(results["STDOUT"], stdout_after)
        assert stdout_after.getvalue() == stdout_before.getvalue()

        lost = wait_for_terminal(nsg, jobs[running.handle])
        assert (lost.stage, lost.failed) == ("COMPLETED", False)
        stderr = io.BytesIO()
        nsg.download(next(f for f in nsg.list_results(lost) if f.filename == "STDERR"), stderr)
        assert "DUE TO NODE FAILURE" in stderr.getvalue().decode()
        new_ids = {f.output_document_id for f in nsg.list_results(lost)}
        assert not new_ids & {f.output_document_id for f in results.values()}
