"""The validations page: the stored paired comparison rendered with its intervals and bars."""

from app.store.models import Validation
from mixopt.mixing.compare import paired_comparison
from tests.conftest import make_project
from tests.dashboard.pages import login


def test_validations_page_renders_the_comparison(client, admin, admin_token, session):
    p = make_project(client, admin, name="val-page")
    login(client, admin_token)
    empty = client.get(f"/dashboard/projects/{p['id']}/validations")
    assert empty.status_code == 200 and 'id="no-validations"' in empty.text
    res = paired_comparison(
        ["natural", "recommended"],
        [[2.0, 2.2, 2.1], [1.9, 2.15, 2.05]],
        {"web": [[2.0, 2.2, 2.1], [1.8, 2.1, 2.0]], "code": [[2.0, 2.2, 2.1], [2.0, 2.2, 2.1]]},
        [0],
        [0, 1, 2],
    )
    for m in res["mixtures"]:
        m.update(
            {
                "source": "x",
                "mixture": {"web": 0.5, "code": 0.5},
                "reference": m["label"] == "natural",
                "run_ids": [],
            }
        )
    v = Validation(
        project_id=p["id"],
        status="succeeded",
        mixtures=[{"label": "natural"}, {"label": "recommended"}],
        seeds=[0, 1, 2],
        preset="tiny",
        train_steps=100,
        settings={},
        objective={},
        run_ids=[],
        result={"objective": {}, "seeds": [0, 1, 2], **res, "notes": ["a note"]},
    )
    session.add(v)
    session.commit()
    html = client.get(f"/dashboard/projects/{p['id']}/validations").text
    assert f'id="validation-{v.id}"' in html and "vs natural" in html
    assert "-0.0667 (3/3 wins)" in html  # mean of -0.1, -0.05, -0.05
    assert (
        "<svg" in html and "-0.133" in html
    )  # per-domain web difference: mean of -0.2, -0.1, -0.1
    r = client.get(f"/dashboard/projects/{p['id']}/validations?validation=999")
    assert r.status_code == 404
