"""The injected map: forked workers, serial order, failures, counting (no NEURON needed)."""

from __future__ import annotations

import os
import time

import pytest

from nsg_app.local.inject.rebuild_local_optimisation import (
    EvaluationMap,
    EvaluationPool,
    ProgressRecorder,
)


class Unpicklable:
    """Stands for an evaluator: the workers inherit it through fork, it never travels."""

    def __init__(self) -> None:
        self.offset = 100
        self.handle = lambda: None  # a lambda attribute makes the object unpicklable

    def evaluate(self, values: list[float]) -> list[float]:
        # Later items finish first, so results arrive out of order.
        time.sleep(0.02 * (5 - values[0] % 5))
        return [values[0] + self.offset, float(os.getpid())]


@pytest.fixture
def recorder(tmp_path):
    return ProgressRecorder(None, cores=2, started_at="2026-01-01T00:00:00+00:00")


@pytest.fixture
def evaluation_map(recorder):
    evaluation_map = EvaluationMap(2, recorder)
    yield evaluation_map
    if evaluation_map._pool is not None:
        evaluation_map._pool.close()


def test_results_keep_the_serial_order_and_use_two_processes(evaluation_map, recorder):
    evaluator = Unpicklable()
    individuals = [[float(number)] for number in range(10)]
    results = evaluation_map(evaluator.evaluate, individuals)
    assert [value for value, _ in results] == [number + 100.0 for number in range(10)]
    workers = {pid for _, pid in results}
    assert len(workers) == 2 and os.getpid() not in workers
    assert recorder.document["evaluations_done"] == 10
    # The same function again: the workers forked the first time are reused.
    again = evaluation_map(evaluator.evaluate, individuals[:4])
    assert {pid for _, pid in again} <= workers


def test_one_core_evaluates_in_this_process(recorder):
    results = EvaluationMap(1, recorder)(Unpicklable().evaluate, [[1.0], [2.0]])
    assert {pid for _, pid in results} == {float(os.getpid())}
    assert recorder.document["evaluations_done"] == 2


def fails_on_three(values):
    if values[0] == 3:
        raise ValueError("cannot evaluate three")
    return values


def test_an_evaluation_error_is_raised_here_with_the_workers_traceback(evaluation_map):
    with pytest.raises(ValueError, match="cannot evaluate three") as raised:
        evaluation_map(fails_on_three, [[float(n)] for n in range(6)])
    notes = "\n".join(raised.value.__notes__)
    assert "evaluating individual 3" in notes and "fails_on_three" in notes
    # The pool was dropped; the next map forks new workers and works.
    assert evaluation_map(fails_on_three, [[1.0], [2.0]]) == [[1.0], [2.0]]


def dies_on_two(values):
    if values[0] == 2:
        os._exit(7)
    time.sleep(0.05)
    return values


def test_a_worker_that_dies_fails_the_map_instead_of_hanging(evaluation_map):
    with pytest.raises(RuntimeError, match=r"died \(exit code 7\) while evaluating individual 2"):
        evaluation_map(dies_on_two, [[float(n)] for n in range(6)])


def test_closing_the_pool_stops_its_workers():
    pool = EvaluationPool(2, abs)
    processes = [process for process, _ in pool._workers]
    assert pool.map([(-1,), (-2,), (3,)], lambda: None) == [1, 2, 3]
    pool.close()
    assert pool.closed
    assert all(not process.is_alive() for process in processes)
    assert {process.exitcode for process in processes} == {0}
