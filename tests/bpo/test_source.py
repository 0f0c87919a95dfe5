from models_app.bpo.source import SourceFile, source_files


def test_source_files_come_in_panel_order(optimisation_dir):
    (optimisation_dir / "init.py").write_text("print('init')\n")
    (optimisation_dir / "mechanisms" / "Ca.mod").write_text("NEURON { SUFFIX ca }\n")

    files = source_files(optimisation_dir)

    assert [(f.path, f.language) for f in files] == [
        ("init.py", "python"),
        ("opt_neuron.py", "python"),
        ("model/__init__.py", "python"),
        ("model/analysis.py", "python"),
        ("model/evaluator.py", "python"),
        ("model/template.py", "python"),
        ("mechanisms/Ca.mod", "nmodl"),
        ("mechanisms/leak.mod", "nmodl"),
    ]
    assert files[0] == SourceFile("init.py", "print('init')\n", "python")


def test_files_that_are_not_utf8_are_still_shown(optimisation_dir):
    (optimisation_dir / "mechanisms" / "leak.mod").write_bytes(b": r\xe9sum\xe9\nNEURON {}\n")

    (mod,) = [f for f in source_files(optimisation_dir) if f.path == "mechanisms/leak.mod"]

    assert mod.text == ": r\ufffdsum\ufffd\nNEURON {}\n"
