"""The demo's plain words: when the fit cannot be trusted and when the recommendation does not
beat natural, it says so."""

from mixopt.demo_training import trust_lines, verdict_lines


def test_an_untrustworthy_fit_is_called_so():
    fit = {"fidelity": {"pooled": {"spearman": 0.40, "r2": -0.15}}}
    rec = {"interval_low": 2.50, "interval_high": 2.60}
    lines = " ".join(trust_lines(fit, rec, {"recommended": 2.55, "natural": 2.59}))
    assert "Spearman 0.4" in lines and "below 0.8" in lines
    assert "no better than" in lines and "R² is -0.15" in lines
    assert "inside the recommendation's own interval" in lines  # 2.59 <= 2.60
    good = trust_lines(
        {"fidelity": {"pooled": {"spearman": 0.9, "r2": 0.7}}},
        {"interval_high": 2.5},
        {"recommended": 2.4, "natural": 2.6},
    )
    assert good == ["the fit ranks held-out runs with Spearman 0.90 and R² 0.70"]


def test_auto_reports_the_nested_figure_beside_its_choice():
    fit = {
        "fidelity": {"nested": True, "pooled": {"spearman": 0.76, "r2": 0.3}},
        "state": {
            "fitted": {
                "chosen": "mixing_law",
                "table": [
                    {"name": "gp", "spearman": 0.75},
                    {"name": "mixing_law", "spearman": 0.88},
                ],
            }
        },
    }
    lines = trust_lines(fit, {"interval_high": 2.4}, {"recommended": 2.45, "natural": 2.5})
    assert lines[0].startswith("auto chose mixing_law (its own 5-fold CV Spearman 0.88)")
    assert "Spearman 0.76: that is the figure to trust" in lines[0]
    assert len(lines) == 2 and "below 0.8" in lines[1]  # 0.76 is the figure judged, not 0.88


def _cmp(ref, diffs, low, high):
    return {
        "label": "recommended",
        "reference": ref,
        "mean": sum(diffs) / len(diffs),
        "wins": sum(d < 0 for d in diffs),
        "seeds": len(diffs),
        "interval_low": low,
        "interval_high": high,
    }


def test_the_verdict_names_a_loss_to_natural():
    v = {
        "result": {
            "comparisons": [
                _cmp("natural", [0.01, -0.02, 0.03], -0.05, 0.06),
                _cmp("uniform", [-0.05, -0.04, -0.06], -0.07, -0.03),
            ]
        }
    }
    natural, uniform = verdict_lines(v)
    assert "does not beat natural" in natural and "1/3 seeds" in natural
    assert "beats uniform on 3/3 seeds by 0.0500" in uniform and "interval" not in uniform
