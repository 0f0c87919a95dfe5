"""The sitecustomize injection: inert by default, lazy, and patching DEAPOptimisation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from nsg_app.local.runner import INJECT_DIR, child_environment

PROBE = textwrap.dedent(
    """
    import json, sys
    report = {"bluepyopt_at_start": "bluepyopt" in sys.modules,
              "multiprocessing_at_start": "multiprocessing" in sys.modules}
    if "--import" in sys.argv:
        import bluepyopt
        import deap.tools
        optimisation = bluepyopt.optimisations.DEAPOptimisation
        report["patched"] = getattr(optimisation, "_rebuild_local_patched", False)
        report["record_patched"] = getattr(deap.tools.Logbook.record, "_rebuild_local_patched", False)
        report["wrapped_init"] = hasattr(optimisation.__init__, "__wrapped__")
    print(json.dumps(report))
    """
)


def probe(env: dict[str, str], *arguments: str) -> dict:
    completed = subprocess.run(
        [sys.executable, "-c", PROBE, *arguments],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_without_the_switch_nothing_is_patched():
    env = dict(os.environ, PYTHONPATH=str(INJECT_DIR))
    env.pop("REBUILD_LOCAL_CORES", None)
    report = probe(env, "--import")
    assert report["patched"] is False and report["record_patched"] is False


def test_with_the_switch_bluepyopt_is_patched_only_when_imported(tmp_path):
    env = child_environment(cores=2, progress_file=tmp_path / "p.json", started_at="x")
    started = probe(env)
    assert started == {"bluepyopt_at_start": False, "multiprocessing_at_start": False}
    report = probe(env, "--import")
    assert report["patched"] is True and report["record_patched"] is True
    assert report["wrapped_init"] is True
    assert not (tmp_path / "p.json").exists()  # nothing to report without an optimisation


def test_a_hidden_sitecustomize_still_runs(tmp_path: Path):
    other = tmp_path / "site"
    other.mkdir()
    (other / "sitecustomize.py").write_text("import builtins\nbuiltins.OTHER_SITE = True\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(INJECT_DIR), str(other)]))
    completed = subprocess.run(
        [sys.executable, "-c", "print(OTHER_SITE)"], env=env, capture_output=True, text=True
    )
    assert completed.stdout.strip() == "True", completed.stderr


def test_the_child_environment_switches_the_injection_on_and_ipyparallel_off(tmp_path, monkeypatch):
    monkeypatch.setenv("USEIPYP", "1")
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    env = child_environment(
        cores=3,
        progress_file=tmp_path / "progress.json",
        started_at="2026-01-01T00:00:00+00:00",
        extra_env={"BLUEPYOPT_SEED": "5"},
    )
    assert "USEIPYP" not in env
    assert env["PYTHONPATH"] == os.pathsep.join([str(INJECT_DIR), "/somewhere"])
    assert env["REBUILD_LOCAL_CORES"] == "3"
    assert env["REBUILD_LOCAL_PROGRESS_FILE"] == str(tmp_path / "progress.json")
    assert env["BLUEPYOPT_SEED"] == "5"
    assert env["PATH"].startswith(str(Path(sys.executable).parent))
