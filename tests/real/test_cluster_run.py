"""A real HBP model on a real ipyparallel cluster (a controller and two sandboxed engines on
loopback): the unmodified package reaches a checkpoint with the serial run's logbook.

Kept small: 2 offspring x 2 generations (4 evaluations of 10-25 s each), the least that
writes a checkpoint.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from models_app.bpo.package import build_package
from nsg_app.local import run_package
from tests.fixtures.cluster import running_cluster

pytestmark = pytest.mark.slow

OFFSPRING_SIZE = 2
MAX_NGEN = 2
SEED = {"BLUEPYOPT_SEED": "3"}


def _logbook(run_folder: Path) -> list[dict]:
    with open(run_folder / "checkpoints" / "checkpoint.pkl", "rb") as file:
        return [dict(record) for record in pickle.load(file, encoding="latin1")["logbook"]]


@pytest.fixture(scope="module")
def package(real_model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cluster-package") / "package.zip"
    stem = real_model.name.rsplit("_", 1)[0]
    build_package(
        real_model.folder,
        run_name=f"{stem}_20260101000000",
        offspring_size=OFFSPRING_SIZE,
        max_ngen=MAX_NGEN,
        out=out,
    )
    return out


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cluster-mechanisms")


@pytest.fixture(scope="module")
def serial(package, cache, tmp_path_factory):
    return run_package(
        package,
        tmp_path_factory.mktemp("cluster-serial") / "run",
        cores=1,
        runtime_seconds=3600,
        mechanisms_cache=cache,
        extra_env=SEED,
    )


@pytest.fixture(scope="module")
def on_cluster(package, cache, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cluster")
    with running_cluster(folder) as cluster:
        return run_package(
            package,
            folder / "runs" / "run",
            cores=1,
            runtime_seconds=3600,
            mechanisms_cache=cache,
            progress_file=folder / "runs" / "progress.json",
            extra_env=SEED,
            cluster=cluster.connection_file,
        )


def test_the_real_model_runs_on_two_engines_to_a_checkpoint(on_cluster):
    assert on_cluster.succeeded and on_cluster.checkpoint_found, (
        on_cluster.reason + on_cluster.stderr_tail
    )
    engines = on_cluster.cluster["engines"]
    assert len(engines) == 2 and on_cluster.cluster["engines_lost"] == []
    assert sum(engine["evaluations"] for engine in engines) == OFFSPRING_SIZE * MAX_NGEN
    assert all(engine["evaluations"] > 0 for engine in engines)


def test_the_cluster_run_has_the_serial_logbook_for_the_same_seed(on_cluster, serial):
    assert serial.succeeded, serial.reason + serial.stderr_tail
    assert _logbook(on_cluster.run_folder) == _logbook(serial.run_folder)
