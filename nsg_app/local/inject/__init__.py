"""Code that runs inside a local run's Python processes (see sitecustomize.py).

The folder itself goes first on the run's PYTHONPATH, so its modules are imported there as
top-level modules; the package form exists for the runner and the tests.
"""
