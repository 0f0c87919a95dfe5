"""Building the run package of a model of real size (issue: under 1 s, median).

The model: the demo optimisation with a 0.5 MB morphology and a dozen .mod files, the
size of the HBP CA1 models (their morphologies are 0.3-0.6 MB, they have 12 mechanisms).
Measured twice: the domain function alone (bpo.build_package on a folder), and the whole
"Create zip file" path (unpack the catalogue's zip from storage, build, store, record).
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "models_app" / "demo" / "CA1_pyr_cACpyr_ballstick3_20261101120000"
NAME = "CA1_pyr_cACpyr_bigmorph_20200101000000"
REPEATS = 21


def real_size_model(target: Path) -> Path:
    folder = target / NAME
    shutil.copytree(DEMO, folder, ignore=shutil.ignore_patterns("__pycache__", "x86_64"))
    # A branching morphology of about 0.5 MB, written as SWC.
    rng = random.Random(1)
    lines = ["1 1 0 0 0 10 -1"]
    tips = [1]
    for index in range(2, 9000):
        parent = rng.choice(tips[-40:])
        lines.append(
            f"{index} {rng.choice((2, 3, 4))} {rng.uniform(-500, 500):.4f} {rng.uniform(-500, 900):.4f} "
            f"{rng.uniform(-80, 80):.4f} {rng.uniform(0.2, 2.5):.4f} {parent}"
        )
        tips.append(index)
    morphology = "\n".join(lines) + "\n"
    while len(morphology) < 500_000:
        morphology += "# padding comment line to reach the size of a real reconstruction\n"
    (folder / "morphology" / "ballstick3.swc").write_text(morphology)
    mod = (folder / "mechanisms" / "hd.mod").read_text()
    for number in range(11):
        (folder / "mechanisms" / f"extra{number}.mod").write_text(
            mod.replace("SUFFIX hd", f"SUFFIX extra{number}")
        )
    return folder


def _median(samples: list[float]) -> float:
    return statistics.median(samples)


def main() -> dict:
    from models_app.bpo.package import build_package

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        folder = real_size_model(scratch)
        size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
        domain = []
        for repeat in range(REPEATS):
            started = time.perf_counter()
            build_package(
                folder,
                run_name=f"{NAME[:-15]}_2026112510{repeat:04d}",
                offspring_size=10,
                max_ngen=2,
                out=scratch / "out.zip",
            )
            domain.append(time.perf_counter() - started)
        site = _site_path(folder, scratch)
    result = {
        "model_bytes": size,
        "build_package_median_s": round(_median(domain), 4),
        "build_package_max_s": round(max(domain), 4),
        "create_zip_file_median_s": round(_median(site), 4),
        "repeats": REPEATS,
        "target_s": 1.0,
    }
    print(f"model of {size / 1e6:.2f} MB (12 .mod files, 0.5 MB morphology), {REPEATS} runs each")
    print(
        f"bpo.build_package: median {result['build_package_median_s'] * 1000:.0f} ms (max {result['build_package_max_s'] * 1000:.0f} ms)"
    )
    print(
        f"'Create zip file' (storage in and out, database): median {result['create_zip_file_median_s'] * 1000:.0f} ms; target < 1000 ms"
    )
    return result


def _site_path(folder: Path, scratch: Path) -> list[float]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rebuild_site.settings")
    os.environ["DEBUG"] = "1"
    os.environ["VAR_DIR"] = str(scratch / "var")
    os.environ.pop("DATABASE_URL", None)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from models_app.services import optimisation_import, package_create

    user = get_user_model().objects.create_user("bench")
    model = optimisation_import(source=folder, kind="command", published=True).optimisation
    samples = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        package_create(optimisation=model, owner=user, offspring_size=10, max_ngen=2)
        samples.append(time.perf_counter() - started)
    return samples
