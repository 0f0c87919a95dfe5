import io
import time
import zipfile

import pytest

from tests.fixtures.emulator import USERS, shared_emulator


@pytest.fixture
def emulator():
    running = shared_emulator()
    running.clear_faults()
    running.forget_requests()
    yield running
    running.clear_faults()
    # Stop what the test left running there: the emulator runs jobs for real.
    for user in USERS:
        with running.client(user) as nsg:
            for status in nsg.list_jobs():
                nsg.delete_job(status)


@pytest.fixture
def nsg_account(emulator):
    """Store `user`'s NSG credentials (NSG user of the same name on the emulator)."""
    from nsg_app.services import nsg_account_save

    def save(user, nsg_user: str | None = None):
        nsg_user = nsg_user or user.username
        return nsg_account_save(owner=user, username=nsg_user, password=USERS[nsg_user])

    return save


@pytest.fixture
def demo_package(transactional_db):
    """A run package of the demo model for `user`."""
    from models_app.demo_model import ensure_demo_model
    from models_app.models import Optimisation
    from models_app.services import package_create

    def make(user, *, offspring_size: int = 2, max_ngen: int = 2):
        ensure_demo_model()
        model = Optimisation.objects.get(source="demo")
        return package_create(
            optimisation=model, owner=user, offspring_size=offspring_size, max_ngen=max_ngen
        )

    return make


@pytest.fixture
def script_package(transactional_db):
    """A run package whose init.py is any script (to crash, to sleep ...)."""
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from models_app.demo_model import ensure_demo_model
    from models_app.models import Optimisation, RunPackage

    def make(user, script: str, *, run_name: str = "CA1_pyr_cACpyr_script_20261125000000"):
        ensure_demo_model()
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr(f"{run_name}/init.py", script)
            archive.writestr(f"{run_name}/checkpoints/", "")
        data = buffer.getvalue()
        name = default_storage.save(f"packages/{user.username}/{run_name}.zip", ContentFile(data))
        return RunPackage.objects.create(
            optimisation=Optimisation.objects.get(source="demo"),
            owner=user,
            run_name=run_name,
            offspring_size=2,
            max_ngen=2,
            file=name,
            size=len(data),
            sha256="0" * 64,
        )

    return make


@pytest.fixture
def failing_package(transactional_db, tmp_path):
    """A run package of the demo naming a mechanism no .mod file defines (isolated
    protocols, as the HBP models have), built below the import layer that refuses it."""
    from django.core.files.storage import default_storage

    from models_app.bpo.package import build_package
    from models_app.demo_model import ensure_demo_model
    from models_app.models import Optimisation, RunPackage
    from tests.fixtures.demo import demo_missing_mechanism

    def make(user, *, run_name: str = "CA1_pyr_cACpyr_ballstick3_20261203120000"):
        ensure_demo_model()
        zip_path = tmp_path / f"{run_name}.zip"
        built = build_package(
            demo_missing_mechanism(tmp_path / "model"),
            run_name=run_name,
            offspring_size=2,
            max_ngen=2,
            out=zip_path,
        )
        with open(zip_path, "rb") as handle:
            name = default_storage.save(f"packages/{user.username}/{run_name}.zip", handle)
        return RunPackage.objects.create(
            optimisation=Optimisation.objects.get(source="demo"),
            owner=user,
            run_name=run_name,
            offspring_size=2,
            max_ngen=2,
            file=name,
            size=built.size,
            sha256=built.sha256,
        )

    return make


def wait_for(job, predicate, *, timeout: float = 90, what: str = "the job", tick=None):
    """Re-read the job until predicate(job) holds; fail with its last state otherwise.

    `tick` runs before each reading (a poll by hand, where beat does not run).
    """
    deadline = time.monotonic() + timeout
    while True:
        if tick is not None:
            tick()
        job.refresh_from_db()
        if predicate(job):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out waiting for {what}: state={job.state} stage={job.stage} error={job.error!r}"
            )
        time.sleep(0.2)
