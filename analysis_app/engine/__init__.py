"""The analysis engine: re-simulate a finished optimisation's best cells and score them.

Django-free, like ``models_app/bpo``. One module per concept:

- ``analysis``: ``analyse(source, out_dir, ...)``, the whole analysis, and its outputs.
- ``sources``: from an NSG output.tar.gz, an NSG results zip or a folder to a private run
  folder and the checkpoint to analyse.
- ``simulation``: the process of its own that runs the model's evaluator (NEURON's state
  is global to a process).
- ``progress``: the progress file a page polls; ``errors``: ``AnalysisError``.
- ``traces``: CSV traces and their light copy for analysis.json.
- ``morphology``: SWC and Neurolucida (.asc) morphologies as line segments.
- ``figures``: the Plotly figures of an analysis, and their HTML and PNG files.

Command line: ``python -m analysis_app.engine SOURCE -o OUT_DIR`` (see ``__main__``).
"""

from .analysis import ANALYSIS_FILE, ERROR_FILE, AnalysisResult, analyse, write_error_file
from .errors import AnalysisError
from .progress import read_progress

__all__ = [
    "ANALYSIS_FILE",
    "ERROR_FILE",
    "AnalysisError",
    "AnalysisResult",
    "analyse",
    "read_progress",
    "write_error_file",
]
