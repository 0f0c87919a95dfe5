"""The job admin: read-only pages, and actions that go through the site's services."""

import pytest
from django.core.files.storage import default_storage

from nsg_app.models import Job
from tests.jobs.test_retention_and_delete import _stored_local_job

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def admin_client(client, staff):
    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    return client


def test_a_job_s_admin_page_shows_its_fields_but_cannot_change_them(admin_client, alice):
    job = _stored_local_job(alice, "CA1_pyr_cACpyr_admin_20261201000010")
    url = f"/admin/nsg_app/job/{job.pk}/change/"

    page = admin_client.get(url).content.decode()
    posted = admin_client.post(url, {"folder": "renamed", "state": "failed"})

    assert job.folder in page and 'name="folder"' not in page
    # no Save button (the sidebar's "Saved comparisons" link is not one)
    assert 'name="_save"' not in page and 'value="Save"' not in page
    assert "Add job" not in admin_client.get("/admin/nsg_app/job/").text
    assert posted.status_code == 403
    job.refresh_from_db()
    assert (job.folder, job.state) == ("CA1_pyr_cACpyr_admin_20261201000010", Job.State.COLLECTED)


def test_the_admin_deletes_jobs_only_with_their_stored_files(admin_client, alice):
    job = _stored_local_job(alice, "CA1_pyr_cACpyr_admin_20261201000011")
    prefix = job.results_prefix
    listing = admin_client.get("/admin/nsg_app/job/").content.decode()
    assert "delete_with_files" in listing and 'value="delete_selected"' not in listing
    assert f'<a href="/admin/nsg_app/job/{job.pk}/change/">{job.folder}</a>' in listing
    assert admin_client.get(f"/admin/nsg_app/job/{job.pk}/delete/").status_code == 403

    response = admin_client.post(
        "/admin/nsg_app/job/",
        {"action": "delete_with_files", "_selected_action": [job.pk], "index": 0},
        follow=True,
    )

    assert "Deleted 1 job(s) with their stored files." in response.content.decode()
    assert not Job.objects.filter(pk=job.pk).exists()
    assert not default_storage.listdir(prefix)[1]
