"""The local backend: run a BluePyOpt run package on this machine instead of on NSG.

Django-free. The web side (Celery task, Job model, storage) starts ``python -m nsg_app.local``
as a child process and follows its progress file; nothing here waits on the web.

- ``runner``: ``run_package`` unpacks the package, compiles its mechanisms (cached), runs
  ``init.py`` in a process group of its own within a time limit, stoppable at any moment, and
  leaves STDOUT, STDERR and output.tar.gz as NSG does; ``LocalRunResult`` says how it ended.
- ``inject/``: code that runs inside the run's Python processes, through a sitecustomize.py
  on their PYTHONPATH: the evaluations of any HBP-style ``opt_neuron.py`` are spread over
  the cores, and progress is written after each evaluation and generation.
- ``progress``: ``read_progress`` and ``estimate_time_left`` for whoever watches a run.
- ``outputs``: the NSG-like control files and output.tar.gz.
- ``cli``: the command line, with a terminal progress bar; it leaves result.json, which
  ``read_result`` reads back.
"""

from .cli import read_result
from .progress import Progress, estimate_time_left, read_progress
from .runner import LocalRunResult, RunStatus, run_package

__all__ = [
    "LocalRunResult",
    "Progress",
    "RunStatus",
    "estimate_time_left",
    "read_progress",
    "read_result",
    "run_package",
]
