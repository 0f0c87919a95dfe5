from models_app.bpo.protocols import StimulusTrace, stimulus_traces

from .builders import protocols_content


def test_step_and_holding_current_add_up_into_one_trace():
    traces = {trace.protocol: trace for trace in stimulus_traces(protocols_content())}

    assert traces["step_0.2"] == StimulusTrace(
        protocol="step_0.2",
        time=(0.0, 531.0, 531.0, 931.0, 931.0, 1131.0),
        current=(0.0, 0.0, 0.2, 0.2, 0.0, 0.0),
    )


def test_holding_current_shifts_the_whole_trace():
    protocols = {
        "step": {
            "stimuli": [
                {"delay": 100, "amp": 0.1, "duration": 200, "totduration": 400},
                {"delay": 0, "amp": 0.2, "duration": 400, "totduration": 400},
            ]
        }
    }

    (trace,) = stimulus_traces(protocols)

    assert trace.time == (0.0, 100.0, 100.0, 300.0, 300.0, 400.0)
    assert trace.current == (0.2, 0.2, 0.3, 0.3, 0.2, 0.2)  # no 0.30000000000000004


def test_short_pulse_is_plotted_until_the_total_duration():
    traces = {trace.protocol: trace for trace in stimulus_traces(protocols_content())}

    assert traces["bAP"].time == (0.0, 531.0, 531.0, 541.0, 541.0, 600.0)
    assert traces["bAP"].current == (0.0, 0.0, 1.0, 1.0, 0.0, 0.0)


def test_traces_come_in_natural_protocol_order_as_plain_numbers():
    traces = stimulus_traces(protocols_content())

    assert [trace.protocol for trace in traces] == ["bAP", "step_-0.8", "step_0.2"]
    assert all(type(value) is float for trace in traces for value in trace.time + trace.current)
