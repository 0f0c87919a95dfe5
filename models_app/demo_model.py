"""The demo optimisation shipped with the project, imported on the first `make run`."""

from __future__ import annotations

from pathlib import Path

from models_app.models import Optimisation

DEMO_FOLDER = Path(__file__).resolve().parent / "demo" / "CA1_pyr_cACpyr_ballstick3_20261101120000"


def ensure_demo_model() -> str:
    """Import the demo model into the shared catalogue unless it is there; return its name."""
    from models_app.services import optimisation_import

    existing = Optimisation.objects.filter(source=Optimisation.Source.DEMO, owner=None).first()
    if existing is not None:
        return existing.name
    outcome = optimisation_import(source=DEMO_FOLDER, kind=Optimisation.Source.DEMO, published=True)
    return outcome.optimisation.name
