"""The dashboard's pages show a staged recommendation's epochs as the exports count them, over
its phases (issue 26: the mixtures page flagged one at 2.0x a cap it reads 0.8 epochs of)."""

from __future__ import annotations

from tests.exports.test_formats import _project, _recommendation


def test_dashboard_pages_count_a_staged_recommendation_over_its_phases(client, admin, session):
    p = _project(
        client,
        admin,
        domains=[{"name": "web", "token_count": 4_000_000}, {"name": "code", "token_count": 10**6}],
        constraints={"target_tokens": 2_000_000, "max_epochs": 1.0},
    )

    def staged(anneal_code: float) -> int:
        phases = [
            {"name": "main", "tokens": 400_000, "start_tokens": 0,
             "mixture_by_domain": {"web": 0.0, "code": 1.0}},
            {"name": "anneal", "tokens": 1_600_000, "start_tokens": 400_000,
             "mixture_by_domain": {"web": 1 - anneal_code, "code": anneal_code}},
        ]  # fmt: skip
        return _recommendation(
            session, p["id"], phases[0]["mixture_by_domain"], details={"staged": {"phases": phases}}
        )

    staged(0.25)  # code: 0.4M + 0.4M = 0.8 epochs (its first phase at the budget: 2.0)
    staged(0.5)  # code: 0.4M + 0.8M = 1.2 epochs
    client.cookies.set("mixopt_token", admin["Authorization"].removeprefix("Bearer "))
    page = client.get(f"/dashboard/projects/{p['id']}/mixtures")
    assert page.status_code == 200, page.text
    assert "code: 1.20 epochs over 2 phases, 1.2x its 1-epoch cap" in page.text
    assert "2.00 epochs" not in page.text and "2.0x" not in page.text
    overview = client.get(f"/dashboard/projects/{p['id']}").text
    # the code row: 0.8 and 1.2 epochs (not 2.0 twice); one pair over its cap
    cells = overview.split("<td>code</td>")[1].split("</tr>")[0]
    assert "/ 0.8×" in cells and "/ 1.2×" in cells and "/ 2×" not in cells, cells
    assert "1 mixture/domain pair exceeds" in overview
