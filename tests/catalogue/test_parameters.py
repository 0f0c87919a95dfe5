"""Editing bounds: versions owned by the user, messages next to fields, originals untouched."""

import pytest

from models_app.models import ParameterSet

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

LOWER = "somatic.gkbar_hh.lower"
UPPER = "somatic.gkbar_hh.upper"


def _form(client, model, **changes) -> dict:
    """The parameters form as the page shows it, with some fields changed."""
    page = client.get(f"/catalogue/{model.pk}/?tab=parameters").content.decode()
    import re

    fields = dict(
        re.findall(
            r'name="([a-z_]+\.[A-Za-z0-9_]+\.(?:lower|upper))" id="[^"]+" value="([^"]*)"', page
        )
    )
    assert LOWER in fields and UPPER in fields, sorted(fields)
    fields.update(changes)
    return fields


def test_saving_new_bounds_makes_a_version_and_keeps_the_original(client, alice, demo_model):
    client.force_login(alice)
    original = demo_model.parameters

    response = client.post(
        f"/catalogue/{demo_model.pk}/parameters/",
        _form(client, demo_model, **{LOWER: "0.02", UPPER: "0.05"}),
    )

    assert response.status_code == 302
    saved = ParameterSet.objects.get(optimisation=demo_model, owner=alice)
    assert saved.version == 1
    assert saved.changes == [["somatic", "gkbar_hh", 0.01, 0.06, 0.02, 0.05]]
    demo_model.refresh_from_db()
    assert demo_model.parameters == original
    page = client.get(response["Location"]).content.decode()
    assert "your version 1" in page and 'value="0.02"' in page
    assert "Return to the original" in page
    assert (
        'value="0.01"' in client.get(f"/catalogue/{demo_model.pk}/?tab=parameters").content.decode()
    )


def test_a_version_builds_on_the_one_viewed(client, alice, demo_model):
    client.force_login(alice)
    client.post(
        f"/catalogue/{demo_model.pk}/parameters/", _form(client, demo_model, **{LOWER: "0.02"})
    )
    form = _form(client, demo_model)
    form.update({"version": "1", UPPER: "0.04"})
    form[LOWER] = "0.02"

    client.post(f"/catalogue/{demo_model.pk}/parameters/", form)

    second = ParameterSet.objects.get(optimisation=demo_model, owner=alice, version=2)
    bounds = {tuple(change[:2]): change[4:] for change in second.changes}
    assert bounds[("somatic", "gkbar_hh")] == [0.02, 0.04]


@pytest.mark.parametrize(
    ("lower", "upper", "message"),
    [
        ("nan", "0.06", "finite"),
        ("inf", "0.06", "finite"),
        ("0.01", "lots", "number"),
        ("0.06", "0.01", "lower"),
        ("0.05", "0.05", "lower"),
        ("", "0.06", "number"),
    ],
)
def test_bad_bounds_are_refused_next_to_their_field(
    client, alice, demo_model, lower, upper, message
):
    client.force_login(alice)

    response = client.post(
        f"/catalogue/{demo_model.pk}/parameters/",
        _form(client, demo_model, **{LOWER: lower, UPPER: upper}),
    )

    assert response.status_code == 400
    page = response.content.decode()
    row = page.split('id="somatic.gkbar_hh.lower"', 1)[1].split("</tr>", 1)[0]
    assert "invalid-feedback" in row and message in row.lower()
    assert "The parameters were not saved" in page
    assert not ParameterSet.objects.exists()


def test_versions_are_private_to_their_owner(client, alice, bob, demo_model):
    client.force_login(alice)
    client.post(
        f"/catalogue/{demo_model.pk}/parameters/", _form(client, demo_model, **{LOWER: "0.02"})
    )

    client.force_login(bob)
    assert client.get(f"/catalogue/{demo_model.pk}/?version=1").status_code == 404
    assert "Your versions" not in client.get(f"/catalogue/{demo_model.pk}/").content.decode()
    assert (
        client.post(
            f"/catalogue/{demo_model.pk}/package/",
            {"offspring_size": 2, "max_ngen": 2, "version": 1},
        ).status_code
        == 404
    )


def test_saving_unchanged_bounds_says_so_and_makes_no_version(client, alice, demo_model):
    client.force_login(alice)

    response = client.post(
        f"/catalogue/{demo_model.pk}/parameters/", _form(client, demo_model), follow=True
    )

    assert "Nothing was saved: these bounds are those of the original parameters." in (
        response.content.decode()
    )
    assert not ParameterSet.objects.filter(optimisation=demo_model).exists()


def test_a_negative_conductance_bound_is_saved_with_a_warning(client, alice, demo_model):
    client.force_login(alice)

    response = client.post(
        f"/catalogue/{demo_model.pk}/parameters/",
        _form(client, demo_model, **{LOWER: "-0.01", UPPER: "0.05"}),
        follow=True,
    )

    page = response.content.decode()
    assert "Saved parameters version 1" in page
    assert "gkbar_hh on somatic: a lower bound of -0.01 S/cm2 allows a negative conductance" in page


def test_features_and_parameters_show_their_units_with_consistent_digits(client, alice, demo_model):
    client.force_login(alice)
    page = client.get(f"/catalogue/{demo_model.pk}/").content.decode()
    # the demo's voltage_base of step_-0.1 is -72 ± 1.5 mV
    assert (
        '<td>voltage_base</td><td class="num">-72.0</td><td class="num">± 1.5</td>'
        "<td>mV</td>" in page
    )
    assert "<td>Spikecount</td>" in page and "<td>count</td>" in page
    parameters = client.get(f"/catalogue/{demo_model.pk}/?tab=parameters").content.decode()
    assert '<td class="small text-muted">S/cm2</td>' in parameters


def test_staff_see_every_user_s_versions_others_do_not(client, alice, bob, staff, demo_model):
    client.force_login(alice)
    client.post(
        f"/catalogue/{demo_model.pk}/parameters/", _form(client, demo_model, **{LOWER: "0.02"})
    )

    client.force_login(staff)
    page = client.get(f"/catalogue/{demo_model.pk}/?tab=parameters").content.decode()
    assert "Users' versions" in page
    assert "<td>alice</td><td>v1</td>" in page
    assert "<code>gkbar_hh</code> on somatic: [0.01, 0.06] → [0.02, 0.06]" in page

    client.force_login(bob)
    page = client.get(f"/catalogue/{demo_model.pk}/?tab=parameters").content.decode()
    assert "Users' versions" not in page and "<td>alice</td>" not in page
