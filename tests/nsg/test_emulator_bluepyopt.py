"""A real BluePyOpt run package, submitted to the emulator, runs to a checkpoint."""

import io
import pickle
import tarfile

import pytest

from tests.fixtures.demo import demo_package
from tests.nsg.polling import wait_for_terminal


@pytest.mark.slow
def test_demo_package_runs_to_completed_with_its_checkpoint_in_output_tar(client, tmp_path):
    package = demo_package(
        tmp_path / "run.zip", run_name="CA1_pyr_cACpyr_ballstick3_20261125101010"
    )

    status = client.submit(
        "BLUEPYOPT_EXPANSE",
        package,
        vparams={"filename_": "init.py", "number_cores_": 2, "number_nodes_": 1, "runtime_": 48},
        metadata={"clientJobId": "bpo-demo"},
    )
    status = wait_for_terminal(client, status, timeout=180)

    assert status.stage == "COMPLETED" and not status.failed
    files = {job_file.filename: job_file for job_file in client.list_results(status)}
    assert set(files) >= {"STDOUT", "STDERR", "output.tar.gz"}
    archive = io.BytesIO()
    client.download(files["output.tar.gz"], archive)
    archive.seek(0)
    with tarfile.open(fileobj=archive, mode="r:gz") as tar:
        names = tar.getnames()
        member = "./CA1_pyr_cACpyr_ballstick3_20261125101010/checkpoints/checkpoint.pkl"
        assert member in names, names
        checkpoint = pickle.loads(tar.extractfile(member).read(), encoding="latin1")
    assert len(checkpoint["logbook"]) == 2  # one record per generation: 2 asked
    assert len(checkpoint["halloffame"]) >= 1
