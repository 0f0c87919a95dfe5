"""The client's XML parsing, on documents shaped like NSG's own (docs/nsg-protocol.md §5)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from nsg_app.nsg import CommunicationError
from nsg_app.nsg.documents import (
    parse_error,
    parse_job_files,
    parse_job_list,
    parse_job_status,
    parse_validation,
)

HANDLE = "NGBW-JOB-BLUEPYOPT_EXPANSE-0123456789ABCDEF0123456789ABCDEF"
JOB_URL = f"https://nsgr.sdsc.edu:8443/cipresrest/v1/job/alice/{HANDLE}"
JOBSTATUS = f"""<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<jobstatus>
    <selfUri><url>{JOB_URL}</url><rel>jobstatus</rel><title>{HANDLE}</title></selfUri>
    <jobHandle>
        {HANDLE}
    </jobHandle>
    <jobStage>SUBMITTED</jobStage>
    <terminalStage>false</terminalStage>
    <failed>false</failed>
    <metadata>
        <entry><key>clientJobId</key><value>wf-42</value></entry>
    </metadata>
    <dateSubmitted>2024-05-02T10:00:00-07:00</dateSubmitted>
    <resultsUri><url>{JOB_URL}/output</url><rel>results</rel><title>Job Results</title></resultsUri>
    <workingDirUri><url>{JOB_URL}/workingdir</url><rel>workingdir</rel><title>Job Working Directory</title></workingDirUri>
    <messages>
        <message><timestamp>2024-05-02T10:00:00-07:00</timestamp><stage>QUEUE</stage><text>Added to NSG run queue.</text></message>
        <message><timestamp>2024-05-02T10:00:15-07:00</timestamp><stage>SUBMITTED</stage><text>Submitted to expanse as job '24039553'.
</text></message>
    </messages>
    <minPollIntervalSeconds>60</minPollIntervalSeconds>
</jobstatus>
""".encode()


def test_parses_a_jobstatus_and_strips_values():
    status = parse_job_status(JOBSTATUS)
    assert status.handle == HANDLE
    assert (status.stage, status.terminal, status.failed) == ("SUBMITTED", False, False)
    assert status.metadata == {"clientJobId": "wf-42"}
    assert status.date_submitted.utcoffset() == timedelta(hours=-7)
    assert status.self_url == JOB_URL
    assert status.results_url == f"{JOB_URL}/output"
    assert status.working_dir_url == f"{JOB_URL}/workingdir"
    assert status.messages[1].text == "Submitted to expanse as job '24039553'."
    timestamp, stage, text = status.messages[0]
    assert (timestamp.hour, stage) == (10, "QUEUE")
    assert status.min_poll_interval_seconds == 60
    assert status.commandline is None


def test_parses_an_expanded_joblist_and_an_empty_one():
    body = b"<joblist><title>t</title><jobs>" + JOBSTATUS.split(b"?>", 1)[1] + b"</jobs></joblist>"
    assert [job.handle for job in parse_job_list(body)] == [HANDLE]
    assert parse_job_list(b"<joblist><title>t</title><jobs/></joblist>") == []
    assert parse_job_list(b"<joblist><title>t</title></joblist>") == []


def test_parses_a_validation_reply():
    body = b"<jobstatus><commandline>\n  inputfile python3 init.py\n</commandline></jobstatus>"
    assert parse_validation(body) == "inputfile python3 init.py"


def test_parses_results():
    body = f"""<results><jobfiles><jobfile>
        <downloadUri><url>{JOB_URL}/output/38</url><rel>fileDownload</rel><title>STDOUT</title></downloadUri>
        <jobHandle>{HANDLE}</jobHandle><filename>STDOUT</filename><length>12</length>
        <parameterName>STDOUT</parameterName><outputDocumentId>38</outputDocumentId>
    </jobfile></jobfiles></results>""".encode()
    [job_file] = parse_job_files(body, "results")
    assert (job_file.filename, job_file.length, job_file.output_document_id) == ("STDOUT", 12, 38)
    assert job_file.download_url == f"{JOB_URL}/output/38"


def test_parses_an_error_with_param_errors_and_limit_status():
    body = b"""<error><displayMessage>Form validation error.</displayMessage>
        <message>Validation Error: runtime_
</message><code>5</code>
        <paramError><param>runtime_</param><error>too long</error></paramError>
        <limitStatus><type>su</type><ceiling>100</ceiling><remaining>0</remaining>
        <resetMinutes>15</resetMinutes><resetDate>2024-05-02T10:00:00-07:00</resetDate></limitStatus>
    </error>"""
    details = parse_error(body)
    assert (details.code, details.message) == (5, "Validation Error: runtime_")
    assert details.param_errors == {"runtime_": "too long"}
    assert (details.limit_status.ceiling, details.limit_status.reset_minutes) == (100, 15.0)
    assert parse_error(b"<html>Bad gateway</html>") is None
    assert parse_error(b"not xml") is None


@pytest.mark.parametrize(
    "body",
    [
        b"<jobstatus><jobHandle>x</jobHandle",  # truncated
        b"<error><code>1</code></error>",  # another document
        b"<jobstatus><jobHandle>x</jobHandle><jobStage>Q</jobStage></jobstatus>",  # no booleans
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaa">]><jobstatus>&a;</jobstatus>',
    ],
)
def test_unexpected_documents_are_communication_errors(body):
    with pytest.raises(CommunicationError):
        parse_job_status(body)
