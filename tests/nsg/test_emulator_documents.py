"""The emulator's replies, read raw, against the shapes of docs/nsg-protocol.md §3-§5."""

from __future__ import annotations

import io
import tarfile

import pytest
import requests
from defusedxml.ElementTree import fromstring

from tests.fixtures.emulator import APP_KEY
from tests.nsg.packages import HELLO_SCRIPT, package
from tests.nsg.polling import wait_for_terminal

DECLARATION = b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
JOBSTATUS_ORDER = [
    "selfUri",
    "jobHandle",
    "jobStage",
    "terminalStage",
    "failed",
    "metadata",
    "dateSubmitted",
    "resultsUri",
    "workingDirUri",
    "messages",
    "minPollIntervalSeconds",
]
JOBFILE_ORDER = [
    "downloadUri",
    "jobHandle",
    "filename",
    "length",
    "parameterName",
    "outputDocumentId",
]
STAGES = ["QUEUE", "COMMANDRENDERING", "INPUTSTAGING", "SUBMITTED", "LOAD_RESULTS", "COMPLETED"]


def get(url: str, *, user="alice", password="secret", app_key=APP_KEY, **kwargs):
    headers = kwargs.pop("headers", {})
    if app_key is not None:
        headers["cipres-appkey"] = app_key
    auth = (user, password) if user is not None else None
    return requests.get(url, auth=auth, headers=headers, timeout=10, **kwargs)


def document(response: requests.Response, root_tag: str):
    assert response.headers["Content-Type"] == "application/xml"
    assert response.content.startswith(DECLARATION)
    assert b"\n    <" in response.content  # pretty-printed, four spaces
    root = fromstring(response.content)
    assert root.tag == root_tag
    return root


def children(element) -> list[str]:
    return [child.tag for child in element]


def assert_link(element, url: str, rel: str, title: str) -> None:
    assert children(element) == ["url", "rel", "title"]
    assert element.findtext("url") == url
    assert element.findtext("rel") == rel
    assert element.findtext("title") == title


@pytest.fixture(scope="module")
def finished_job(emulator_process):
    with emulator_process.client("alice") as nsg:
        status = nsg.submit(
            "PY_EXPANSE",
            package(HELLO_SCRIPT),
            vparams={"filename_": "init.py"},
            metadata={"clientJobId": "doc-1", "statusEmail": "false"},
        )
        return wait_for_terminal(nsg, status)


def test_service_root_is_links(emulator):
    root = document(requests.get(emulator.base_url, timeout=10), "links")
    urls = [link.findtext("url") for link in root.findall("link")]
    assert f"{emulator.base_url}/job" in urls


def test_jobstatus_has_nsg_elements_in_order(emulator, finished_job):
    job_url = f"{emulator.base_url}/job/alice/{finished_job.handle}"
    root = document(get(job_url), "jobstatus")
    assert children(root) == JOBSTATUS_ORDER
    assert_link(root.find("selfUri"), job_url, "jobstatus", finished_job.handle)
    assert_link(root.find("resultsUri"), f"{job_url}/output", "results", "Job Results")
    assert_link(
        root.find("workingDirUri"), f"{job_url}/workingdir", "workingdir", "Job Working Directory"
    )
    assert root.findtext("jobStage") == "COMPLETED"
    assert (root.findtext("terminalStage"), root.findtext("failed")) == ("true", "false")
    entries = {e.findtext("key"): e.findtext("value") for e in root.findall("metadata/entry")}
    assert entries == {"clientJobId": "doc-1", "statusEmail": "false"}
    assert root.findtext("minPollIntervalSeconds") == "0"
    messages = root.findall("messages/message")
    assert [children(m) for m in messages] == [["timestamp", "stage", "text"]] * len(messages)
    assert [m.findtext("stage") for m in messages] == [
        "QUEUE",
        "COMMANDRENDERING",
        "INPUTSTAGING",
        "INPUTSTAGING",
        "SUBMITTED",
        "LOAD_RESULTS",
        "COMPLETED",
    ]
    texts = [m.findtext("text") for m in messages]
    assert texts[0] == "Added to NSG run queue."
    assert texts[1] == "Command rendered successfully: inputfile python3 init.py"
    assert texts[2] == "Staging input files to expanse"
    assert texts[3].startswith("Input files staged successfully to ")
    assert texts[4].startswith("Submitted to expanse as job '")
    assert texts[5:] == [
        "Trying to transfer results.",
        "Output files retrieved.  Task is finished.",
    ]
    # ISO-8601 with a numeric offset, e.g. 2024-05-02T10:00:00-07:00
    assert root.findtext("dateSubmitted")[-6] in "+-"
    assert root.findtext("dateSubmitted")[-3] == ":"


def test_job_handle_format(finished_job):
    prefix, _, suffix = finished_job.handle.rpartition("-")
    assert prefix == "NGBW-JOB-PY_EXPANSE"
    assert len(suffix) == 32 and suffix == suffix.upper()
    int(suffix, 16)


def test_joblist_without_expand_holds_only_self_uris(emulator, finished_job):
    root = document(get(f"{emulator.base_url}/job/alice"), "joblist")
    assert children(root) == ["title", "jobs"]
    statuses = root.findall("jobs/jobstatus")
    assert statuses and all(children(s) == ["selfUri"] for s in statuses)
    titles = [s.findtext("selfUri/title") for s in statuses]
    assert finished_job.handle in titles


def test_joblist_with_expand_holds_full_statuses(emulator, finished_job):
    root = document(get(f"{emulator.base_url}/job/alice/", params={"expand": "true"}), "joblist")
    statuses = root.findall("jobs/jobstatus")
    assert statuses and all(children(s) == JOBSTATUS_ORDER for s in statuses)


def test_empty_joblist_has_jobs_element(emulator):
    root = document(get(f"{emulator.base_url}/job/bob", user="bob", password="pw"), "joblist")
    assert root.find("jobs") is not None


def test_job_without_user_lists_the_authenticated_users_jobs(emulator, finished_job):
    root = document(get(f"{emulator.base_url}/job"), "joblist")
    assert finished_job.handle in [s.findtext("selfUri/title") for s in root.iter("jobstatus")]


def test_results_listing_and_downloads(emulator, finished_job):
    results_url = f"{emulator.base_url}/job/alice/{finished_job.handle}/output"
    root = document(get(results_url), "results")
    jobfiles = root.findall("jobfiles/jobfile")
    assert [children(f) for f in jobfiles] == [JOBFILE_ORDER] * 3
    by_name = {f.findtext("filename"): f for f in jobfiles}
    assert set(by_name) == {"STDOUT", "STDERR", "output.tar.gz"}
    assert by_name["output.tar.gz"].findtext("parameterName") == "outputfile"
    ids = [int(f.findtext("outputDocumentId")) for f in jobfiles]
    assert len(set(ids)) == 3 and all(0 < i < 10_000 for i in ids)
    for name, jobfile in by_name.items():
        url = f"{results_url}/{jobfile.findtext('outputDocumentId')}"
        assert_link(jobfile.find("downloadUri"), url, "fileDownload", name)
        assert jobfile.findtext("jobHandle") == finished_job.handle
        response = get(url)
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "text/plain"
        assert response.headers["Content-Disposition"] == f"attachment; filename={name}"
        assert response.headers["Transfer-Encoding"] == "chunked"
        assert len(response.content) == int(jobfile.findtext("length"))
    stdout = get(f"{results_url}/{by_name['STDOUT'].findtext('outputDocumentId')}").text
    assert "hello from NSG" in stdout
    tarball = get(f"{results_url}/{by_name['output.tar.gz'].findtext('outputDocumentId')}")
    with tarfile.open(fileobj=io.BytesIO(tarball.content)) as tar:
        names = tar.getnames()
        assert all(name == "." or name.startswith("./") for name in names)
        for control in [
            "_COMMANDLINE",
            "_JOBINFO.TXT",
            "batch_command.cmdline",
            "scheduler.conf",
            "start.txt",
            "done.txt",
            "stdout.txt",
            "stderr.txt",
            "inputfile",
        ]:
            assert f"./{control}" in names
        assert "./job_dir/output.txt" in names
        assert tar.extractfile("./job_dir/output.txt").read() == b"42\n"
        assert tar.extractfile("./stdout.txt").read().decode() == stdout
        assert tar.extractfile("./done.txt").read().startswith(b"Job finished at ")


def test_working_dir_is_empty_once_finished(emulator, finished_job):
    url = f"{emulator.base_url}/job/alice/{finished_job.handle}/workingdir"
    root = document(get(url), "workingdir")
    assert children(root) == ["jobfiles"] and len(root.find("jobfiles")) == 0


def test_error_document_for_unknown_job(emulator):
    response = get(f"{emulator.base_url}/job/alice/NGBW-JOB-PY_EXPANSE-0000")
    assert response.status_code == 404
    root = document(response, "error")
    assert children(root) == ["displayMessage", "message", "code"]
    assert root.findtext("code") == "4"
    assert root.findtext("displayMessage") == "Job not found."


@pytest.mark.parametrize(
    "credentials",
    [
        {"user": None},
        {"password": "wrong"},
        {"user": "mallory", "password": "x"},
        {"app_key": None},
        {"app_key": "Other-0123"},
    ],
)
def test_authentication_failures(emulator, credentials):
    response = get(f"{emulator.base_url}/job/alice", **credentials)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="Cipres Authentication"'
    root = document(response, "error")
    assert root.findtext("code") == "2"
    assert root.findtext("displayMessage") == "Authentication Error"
    assert "AuthenticationException" in root.findtext("message")


def test_user_mismatch(emulator, finished_job):
    response = get(f"{emulator.base_url}/job/alice", user="bob", password="pw")
    assert document(response, "error").findtext("code") == "6"
    response = get(f"{emulator.base_url}/job/bob/{finished_job.handle}", user="bob", password="pw")
    assert document(response, "error").findtext("code") == "6"


def test_accept_header_excluding_xml_gets_406(emulator):
    url = f"{emulator.base_url}/job/alice"
    assert get(url, headers={"Accept": "application/json"}).status_code == 406
    assert get(url, headers={"Accept": "application/xml"}).status_code == 200
    assert get(url, headers={"Accept": "*/*"}).status_code == 200


def test_submission_errors_are_param_errors(emulator):
    response = requests.post(
        f"{emulator.base_url}/job/alice",
        auth=("alice", "secret"),
        headers={"cipres-appkey": APP_KEY},
        files={"vparam.runtime_": (None, "49"), "vparam.number_nodes_": (None, "73")},
        data={"tool": "BLUEPYOPT_EXPANSE"},
        timeout=10,
    )
    assert response.status_code == 400
    root = document(response, "error")
    assert root.findtext("code") == "5"
    assert children(root)[:3] == ["displayMessage", "message", "code"]
    errors = {e.findtext("param"): e.findtext("error") for e in root.findall("paramError")}
    assert set(errors) == {"runtime_", "number_nodes_", "infile_"}
    assert errors["runtime_"] == "Maximum Hours to Run must be less than 48."


def test_delete_replies_empty_200(emulator):
    with emulator.client() as nsg:
        status = nsg.submit("PY_EXPANSE", package(HELLO_SCRIPT), vparams={"filename_": "init.py"})
    response = requests.delete(
        status.self_url, auth=("alice", "secret"), headers={"cipres-appkey": APP_KEY}, timeout=30
    )
    assert response.status_code == 200
    assert response.content == b""
    assert get(status.self_url).status_code == 404


def test_tool_list_and_pise(emulator):
    root = document(requests.get(f"{emulator.base_url}/tool", timeout=10), "tools")
    tool_ids = [tool.findtext("toolId") for tool in root.findall("tool")]
    assert tool_ids == ["BLUEPYOPT_EXPANSE", "BLUEPYOPT_TG", "PY_EXPANSE", "NEURON_EXPANSE"]
    pise = document(
        requests.get(f"{emulator.base_url}/tool/PY_EXPANSE/doc/pise", timeout=10), "pise"
    )
    assert "cmdlineopts_" in [p.findtext("name") for p in pise.iter("parameter")]
    assert requests.get(f"{emulator.base_url}/tool/NOPE/doc/pise", timeout=10).status_code == 404


def test_test_endpoints_report_bad_faults(emulator):
    response = requests.post(
        f"{emulator.root_url}/_emulator/faults/alice", data={"kind": "nonsense"}, timeout=5
    )
    assert response.status_code == 400
