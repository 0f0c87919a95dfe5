"""Continuing a run: the resume flag read from opt_neuron.py, and packages that resume."""

import io
import json
import zipfile
from pathlib import Path

import pytest

from models_app.bpo.checkpoints import CheckpointSummary
from models_app.bpo.continuation import CannotContinue, continued_from, resume_flag
from models_app.bpo.package import InvalidPackageRequest, build_package

from .builders import KEY

RUN = "CA1_pyr_cACpyr_testcell_20240305140709"
HBP_ARGPARSE = """
import argparse
parser = argparse.ArgumentParser(description='Neuron optimization')
parser.add_argument('--start', action="store_true")
parser.add_argument('--resume', action="store_true", default=False)
parser.add_argument('--checkpoint', required=False, default=None)
args = parser.parse_args()
opt.run(max_ngen=args.max_ngen, continue_cp=args.resume, cp_filename=args.checkpoint)
"""
DEMO_ARGPARSE = """
def get_parser():
    parser = argparse.ArgumentParser()
    parser.add_argument('--continue_cp', '--resume', action='store_true', dest='continue_cp')
    return parser
def main():
    args = get_parser().parse_args()
    opt.run(max_ngen=args.max_ngen, continue_cp=args.continue_cp)
"""
OWN_SPELLING = """
parser.add_argument('-c', '--carry-on', action='store_true')
opt.run(continue_cp=args.carry_on)
"""
NEVER_RESUMES = """
parser.add_argument('--resume', action='store_true')
opt.run(max_ngen=args.max_ngen, continue_cp=False)
"""
UNDECLARED = """
opt.run(continue_cp=args.resume)
"""


def _script(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "opt_neuron.py").write_text(text)
    return folder


@pytest.mark.parametrize(
    "text, flag",
    [
        (HBP_ARGPARSE, "--resume"),
        (DEMO_ARGPARSE, "--resume"),
        (OWN_SPELLING, "--carry-on"),
        (NEVER_RESUMES, None),
        (UNDECLARED, None),
        ("print 'a Python 2 script'\n", None),
    ],
)
def test_the_resume_flag_is_the_one_argparse_gives_continue_cp(tmp_path, text, flag):
    assert resume_flag(_script(tmp_path / "model", text)) == flag


def test_a_script_without_resume_mode_is_refused_with_the_reason(tmp_path):
    folder = _script(tmp_path / "model", NEVER_RESUMES)
    summary = CheckpointSummary("checkpoint.pkl", None, None, 1.0, generation=3, offspring_size=4)

    with pytest.raises(CannotContinue) as refused:
        continued_from(folder, folder / "x.pkl", summary, source="run", model_name="CA1_x")

    assert "CA1_x cannot be continued: its opt_neuron.py has no resume mode" in str(refused.value)


def test_an_unreadable_checkpoint_is_refused_with_the_reason(tmp_path):
    folder = _script(tmp_path / "model", HBP_ARGPARSE)
    summary = CheckpointSummary("checkpoint.pkl", None, None, error="UnpicklingError: bad")

    with pytest.raises(CannotContinue, match="could not be read: UnpicklingError: bad"):
        continued_from(folder, folder / "x.pkl", summary, source="run", model_name="CA1_x")


def _continued(optimisation_dir: Path, checkpoint: Path):
    folder = _script(
        optimisation_dir, (optimisation_dir / "opt_neuron.py").read_text() + HBP_ARGPARSE
    )
    checkpoint.write_bytes(b"the checkpoint's bytes")
    summary = CheckpointSummary(checkpoint.name, None, None, 5.0, generation=3, offspring_size=6)
    return folder, continued_from(folder, checkpoint, summary, source="job 7", model_name=RUN)


def test_a_continuing_package_carries_the_checkpoint_and_resumes_it(optimisation_dir, tmp_path):
    folder, found = _continued(optimisation_dir, tmp_path / "seed4.pkl")
    buffer = io.BytesIO()

    result = build_package(
        folder, run_name=RUN, offspring_size=6, max_ngen=5, out=buffer, continued_from=found
    )

    with zipfile.ZipFile(buffer) as archive:
        assert archive.read(f"{RUN}/checkpoints/checkpoint.pkl") == b"the checkpoint's bytes"
        init = archive.read(f"{RUN}/init.py").decode()
        manifest = json.loads(archive.read(f"{RUN}/rebuild_manifest.json"))
    assert '"--resume"' in init and '"--start"' not in init and '"--max_ngen=5"' in init
    assert manifest["continued_from"] == {
        "source": "job 7",
        "checkpoint": "seed4.pkl",
        "generation": 3,
        "offspring_size": 6,
        "resume_flag": "--resume",
    }
    assert manifest["source"]["key"] == KEY
    assert result.warnings == ()


@pytest.mark.parametrize(
    "offspring, generations, message",
    [
        (6, 3, r"must be more than 3 \(it is the total"),
        (6, 1, "must be more than 3"),
        (10, 5, "keeps the checkpoint's offspring size, 6, not 10"),
    ],
)
def test_a_continuing_package_refuses_what_cannot_resume(
    optimisation_dir, tmp_path, offspring, generations, message
):
    folder, found = _continued(optimisation_dir, tmp_path / "checkpoint.pkl")
    out = tmp_path / "out" / "run.zip"
    out.parent.mkdir()

    with pytest.raises(InvalidPackageRequest, match=message):
        build_package(
            folder,
            run_name=RUN,
            offspring_size=offspring,
            max_ngen=generations,
            out=out,
            continued_from=found,
        )

    assert list(out.parent.iterdir()) == []
