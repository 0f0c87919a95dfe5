from models_app.bpo.features import FeatureRow, feature_rows

from .builders import features_content


def test_feature_rows_come_in_natural_protocol_order():
    rows = feature_rows(features_content())

    assert rows == [
        FeatureRow("bAP", "dend150", "AP1_amp", 61.6, 20),
        FeatureRow("step_-0.8", "soma", "voltage_deflection", -19.3, 4.7),
        FeatureRow("step_0.2", "soma", "Spikecount", 1.5, 2.0),
        FeatureRow("step_0.2", "soma", "voltage_base", -69.2, 4.4),
    ]


def test_feature_rows_do_not_depend_on_key_order():
    content = features_content()
    reordered = {protocol: content[protocol] for protocol in reversed(list(content))}

    assert feature_rows(reordered) == feature_rows(content)


def test_soma_comes_before_other_locations():
    content = {"bAP": {"dend250": {"AP1_amp": [57, 30]}, "soma": {"Spikecount": [1, 1]}}}

    assert [row.location for row in feature_rows(content)] == ["soma", "dend250"]
