"""Units from eFEL's own definitions and NEURON's conventions; numbers with consistent digits."""

import pytest

from analysis_app.engine.figures import features_figure
from models_app.bpo.units import feature_unit, mean_and_std, parameter_unit


@pytest.mark.parametrize(
    ("feature", "unit"),
    [
        ("voltage_base", "mV"),
        ("AP_amplitude", "mV"),
        ("inv_first_ISI", "Hz"),
        ("mean_frequency", "Hz"),
        ("time_to_first_spike", "ms"),
        ("Spikecount", "count"),
        ("adaptation_index2", ""),
        ("no_such_feature", ""),
    ],
)
def test_feature_units_come_from_efel(feature, unit):
    assert feature_unit(feature) == unit


@pytest.mark.parametrize(
    ("name", "unit"),
    [
        ("gkdrbar_kdr", "S/cm2"),
        ("gbar_nax", "S/cm2"),
        ("g_pas", "S/cm2"),
        ("ghdbar_hd", "S/cm2"),
        ("Ra", "ohm cm"),
        ("cm", "uF/cm2"),
        ("e_pas", "mV"),
        ("ena", "mV"),
        ("ek", "mV"),
        ("v_init", "mV"),
        ("celsius", "degC"),
        ("tau_something", ""),
    ],
)
def test_parameter_units_follow_neuron(name, unit):
    assert parameter_unit(name) == unit


def test_mean_and_std_share_their_decimals():
    assert mean_and_std(78, 5) == ("78.0", "5.0")
    assert mean_and_std(-71.5, 1.5) == ("-71.5", "1.5")
    assert mean_and_std(0.0123456, 0.00456) == ("0.0123", "0.0046")
    assert mean_and_std(12, 0) == ("12", "0")


def test_a_per_spike_feature_sits_where_its_score_says():
    """The Features figure and the objective bars agree for multi-valued features."""
    objective = {
        "name": "step.soma.AP_amplitude",
        "feature": "AP_amplitude",
        "value": [70.0, 90.0],  # averages to the mean, yet each spike is 10 mV off
        "experimental_mean": 80.0,
        "experimental_std": 5.0,
        "score": 2.0,
    }
    figure = features_figure({"individuals": [{"objectives": [objective]}]})
    assert list(figure.data[0].x) == [pytest.approx(2.0)]
    assert "80.0 ± 5.0 mV" in figure.data[0].customdata[0]
