"""A local emulator of the NSG REST API (docs/nsg-protocol.md), with real job runs.

Start it with `python -m nsg_app.emulator --user alice:secret --appkey KEY` (see
`__main__.py` for the options) or `manage.py nsg_emulator ...`. No Django here.
"""

from .faults import Fault, FaultRegistry
from .server import EmulatorConfig, EmulatorServer, create_server

__all__ = ["EmulatorConfig", "EmulatorServer", "Fault", "FaultRegistry", "create_server"]
