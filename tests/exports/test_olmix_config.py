"""olmix's own fit config (allenai/olmix ``olmix/fit/config.py``, ``FitConfig``) as a project:
``mixopt project create NAME -f olmix_fit.yaml`` (issue 26: it was a 422 on
``constraints.enabled`` and ``repetition_factor``)."""

from __future__ import annotations

import pytest

from mixopt.exports.olmix_config import project_from_olmix_fit

#: an olmix fit config, every section of FitConfig, written as olmix's examples are
OLMIX_FIT = """\
swarm:
  ratios: ratios.csv
  metrics: metrics.csv
priors:
  relative_sizes:
    web: 0.75
    code: 0.25
  token_counts:
    web: 3_000_000_000
    code: 1_000_000_000
eval:
  type: offline
  tasks:
    lm: [val/web, val/code, val/math]
regression:
  type: log_linear
  seed: 0
  n_test: 0
  train_split: 1.0
  aggregate_task_families: false
proposer:
  type: exact
  temperature: null
  kl_reg: 0.1
  fit_only: false
  make_worst_mix: false
constraints:
  enabled: true
  target_tokens: 8_000_000_000
  repetition_factor: 5.0
filtering:
  drop_metrics: [val/math]
  obj_weights: {}
"""


def _config(**changes) -> dict:
    import yaml

    data = yaml.safe_load(OLMIX_FIT)
    for dotted, value in changes.items():
        section, _, key = dotted.partition("__")
        if key:
            data[section][key] = value
        else:
            data[section] = value
    return data


def test_olmix_fit_config_maps_onto_a_project():
    spec, notes = project_from_olmix_fit(_config())
    assert spec["domains"] == [
        {"name": "web", "token_count": 3_000_000_000},
        {"name": "code", "token_count": 1_000_000_000},
    ]
    # olmix keeps w x target_tokens <= tokens x repetition_factor: mixopt's max_epochs
    assert spec["constraints"] == {"target_tokens": 8_000_000_000, "max_epochs": 5.0}
    # the eval metrics less the dropped ones, equally weighted (olmix's objective)
    assert spec["objective"] == {"val/web": 1.0, "val/code": 1.0}
    assert any(n.startswith("swarm: ") and "ratios.csv metrics.csv" in n for n in notes)
    # disabled constraints: no cap (olmix does not filter), the target still the budget
    spec, _ = project_from_olmix_fit(_config(constraints__enabled=False))
    assert spec["constraints"] == {"target_tokens": 8_000_000_000}
    # obj_weights as olmix reads them, fractions included
    spec, _ = project_from_olmix_fit(
        _config(filtering={"drop_metrics": [], "obj_weights": {"val/web": "7/14", "val/code": 2}})
    )
    assert spec["objective"] == {"val/web": 0.5, "val/code": 2.0}


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"bogus": 1}, "['bogus']"),
        ({"constraints__max_epochs": 2}, "['constraints.max_epochs']"),
        ({"constraints__target_tokens": None}, "requires constraints.target_tokens"),
        ({"priors__relative_sizes": {"web": 1.0}}, "relative_sizes"),
        ({"constraints__repetition_factor": "many"}, "repetition_factor"),
    ],
)
def test_olmix_fit_config_refusals_name_the_key(changes, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        project_from_olmix_fit(_config(**changes))
