"""Every class of malformed or hostile archive is refused with a clear message; nothing is stored."""

import io
import json
import stat
import zipfile

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile

from models_app.models import Optimisation
from tests.catalogue.conftest import zip_folder

pytestmark = pytest.mark.django_db


def _zip(entries: dict[str, bytes], *, links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return buffer.getvalue()


def _with_demo(demo_copy, extra: dict[str, bytes] | None = None, links=None, change=None) -> bytes:
    folder = demo_copy()
    if change:
        change(folder)
    buffer = io.BytesIO(zip_folder(folder, top=folder.name))
    with zipfile.ZipFile(buffer, "a") as archive:
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return buffer.getvalue()


def _break_json(folder):
    (folder / "config" / "features.json").write_bytes(b'{"CA1_PC_demo": {\xff\xfe')


def _mismatch_key(folder):
    path = folder / "config" / "protocols.json"
    document = json.loads(path.read_text())
    path.write_text(json.dumps({"OTHER_KEY": document["CA1_PC_demo"]}))


def _key_not_in_opt_neuron(folder):
    path = folder / "opt_neuron.py"
    path.write_text(path.read_text().replace("'CA1_PC_demo'", "'SOMETHING_ELSE'"))


def _no_mod(folder):
    for mod in (folder / "mechanisms").glob("*.mod"):
        mod.unlink()


def _bad_bounds(folder):
    path = folder / "config" / "parameters.json"
    document = json.loads(path.read_text())
    first_section = next(iter(document["CA1_PC_demo"]["optimized"]))
    document["CA1_PC_demo"]["optimized"][first_section][0][1:3] = [5, 1]
    path.write_text(json.dumps(document))


def _bound_of_digits(digits: int):
    def change(folder):
        path = folder / "config" / "parameters.json"
        text = path.read_text()
        document = json.loads(text)
        first_section = next(iter(document["CA1_PC_demo"]["optimized"]))
        document["CA1_PC_demo"]["optimized"][first_section][0][2] = 123456789
        # Written as text: json.dumps itself cannot write integers past 4,300 digits.
        path.write_text(json.dumps(document).replace("123456789", "9" * digits, 1))

    return change


def _nested_brackets(folder):
    (folder / "config" / "parameters.json").write_text("[" * 100_000 + "]" * 100_000)


CASES = {
    "absolute path": (lambda d: _with_demo(d, {"/etc/evil.txt": b"x"}), "absolute"),
    "parent folder": (lambda d: _with_demo(d, {"../evil.txt": b"x"}), ".."),
    "symbolic link": (
        lambda d: _with_demo(d, links={"CA1_int_bAC_demo2_20200101010101/link": "/etc/passwd"}),
        "link",
    ),
    "too many files": (
        lambda d: _zip({f"many/{i}.txt": b"" for i in range(5001)}),
        "at most 5,000",
    ),
    "undecodable JSON": (lambda d: _with_demo(d, change=_break_json), "features.json"),
    "keys differ": (lambda d: _with_demo(d, change=_mismatch_key), "OTHER_KEY"),
    "key not in opt_neuron.py": (
        lambda d: _with_demo(d, change=_key_not_in_opt_neuron),
        "opt_neuron.py",
    ),
    "no mechanism": (lambda d: _with_demo(d, change=_no_mod), ".mod"),
    "lower above upper": (lambda d: _with_demo(d, change=_bad_bounds), "lower"),
    "a 5,001-digit bound": (
        lambda d: _with_demo(d, change=_bound_of_digits(5001)),
        "parameters.json holds a number too long",
    ),
    "a bound past the largest float": (
        lambda d: _with_demo(d, change=_bound_of_digits(4000)),
        "upper",
    ),
    "100,000 nested brackets": (
        lambda d: _with_demo(d, change=_nested_brackets),
        "parameters.json nests its brackets too deeply",
    ),
    "two top folders": (lambda d: _zip({"a/x.txt": b"1", "b/y.txt": b"2"}), "exactly one"),
    "not a zip": (lambda d: b"this is not a zip file", "zip"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_archive_is_refused_with_a_message_and_nothing_stored(case, client, alice, demo_copy):
    build, expected = CASES[case]
    client.force_login(alice)
    stored_before = _stored()

    response = client.post(
        "/catalogue/upload/",
        {"archive": SimpleUploadedFile("model.zip", build(demo_copy), "application/zip")},
    )

    assert response.status_code == 400
    page = response.content.decode()
    assert 'id="upload-errors"' in page
    errors = page.split('id="upload-errors"', 1)[1].split("</div>", 1)[0]
    assert expected.lower() in errors.lower(), errors
    assert Optimisation.objects.count() == 0
    assert _stored() == stored_before


def _stored() -> tuple:
    return default_storage.listdir("catalogue") if default_storage.exists("catalogue") else ([], [])


def test_zip_bomb_is_refused_without_filling_the_disk(client, alice):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open("bomb/zeros.bin", "w", force_zip64=True) as member:
            chunk = bytes(8 * 1024 * 1024)
            for _ in range(33):  # 264 MB of zeros, a few hundred kB compressed
                member.write(chunk)
    client.force_login(alice)

    response = client.post(
        "/catalogue/upload/",
        {"archive": SimpleUploadedFile("bomb.zip", buffer.getvalue(), "application/zip")},
    )

    assert response.status_code == 400
    assert "MB" in response.content.decode()
    assert Optimisation.objects.count() == 0


def test_a_file_that_is_not_a_zip_by_name_is_refused(client, alice):
    client.force_login(alice)
    response = client.post(
        "/catalogue/upload/", {"archive": SimpleUploadedFile("model.tar", b"abc")}
    )
    assert response.status_code == 400
    assert "Upload a .zip file." in response.content.decode()
