"""Model of the demonstration optimisation CA1_PC_demo (BluePyOpt ephys)"""

from . import template  # NOQA
from . import evaluator  # NOQA
from . import analysis  # NOQA
