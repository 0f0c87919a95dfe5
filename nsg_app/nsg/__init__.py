"""Client for the Neuroscience Gateway (NSG) REST API; no Django here.

    from nsg_app.nsg import NsgClient, NotFound

    with NsgClient(base_url, app_key, username, password) as nsg:
        status = nsg.submit("BLUEPYOPT_EXPANSE", Path("run.zip"),
                            vparams={"filename_": "init.py", "runtime_": 0.5},
                            metadata={"clientJobId": "job-42"})
        status = nsg.job_status(status)
        if status.terminal and not status.failed:
            for job_file in nsg.list_results(status):
                with open(job_file.filename, "wb") as out:
                    nsg.download(job_file, out)

See docs/nsg-protocol.md for the protocol itself.
"""

from .client import NsgClient
from .documents import DEFAULT_MIN_POLL_INTERVAL_SECONDS, JobFile, JobMessage, JobStatus, Tool
from .errors import (
    AuthenticationError,
    AuthorizationError,
    BadRequest,
    CommunicationError,
    DisabledResource,
    DownloadIncomplete,
    LimitStatus,
    NotFound,
    NsgError,
    ServerError,
    UsageLimit,
    UserMismatch,
    ValidationError,
)
from .transport import RetryPolicy, Timeouts, Transport

__all__ = [
    "DEFAULT_MIN_POLL_INTERVAL_SECONDS",
    "AuthenticationError",
    "AuthorizationError",
    "BadRequest",
    "CommunicationError",
    "DisabledResource",
    "DownloadIncomplete",
    "JobFile",
    "JobMessage",
    "JobStatus",
    "LimitStatus",
    "NotFound",
    "NsgClient",
    "NsgError",
    "RetryPolicy",
    "ServerError",
    "Timeouts",
    "Tool",
    "Transport",
    "UsageLimit",
    "UserMismatch",
    "ValidationError",
]
