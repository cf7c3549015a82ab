"""``olmo-core``: ``olmo_core_mixture.yaml``, the fields of ``olmo_core.data.source_mixture.
SourceMixtureDatasetConfig`` (ai2-olmo-core 3.x), loaded by ``SourceMixtureDatasetConfig.
from_yaml``, plus ``olmo_core_mixture.py`` that loads, validates and builds it. An epoch cap
becomes ``max_repetition_ratio`` (>= 1) or ``max_source_fraction`` (< 1)."""

from __future__ import annotations

import json
from typing import Any

from mixopt.exports.spec import (
    ExportError,
    MixtureExport,
    constraint,
    max_epochs,
    token_budget,
    trainer_paths,
    weighted_domains,
    yaml_text,
)

FORMAT = "olmo-core"
LABEL = "OLMo-core"
#: a staged recommendation: one file set per phase (``phaseK-name/``)
STAGED: str | None = "per-phase"


OLMO_CORE_SCRIPT = '''"""Build the mixture exported by mixopt with OLMo-core (ai2-olmo-core >= 3).

    python olmo_core_mixture.py DTYPE      # DTYPE: the dtype your .npy token files use, e.g. uint32

The sources, ratios, repetition caps, token budget, batch size and seed are in
olmo_core_mixture.yaml next to this file; to train, pass the config as
NumpyFSLDatasetConfig.from_src_mix(config, ...) in your OLMo-core training script.
"""

import json
import sys
from pathlib import Path

from olmo_core.data.source_mixture import SourceMixtureDatasetConfig

HERE = Path(__file__).resolve().parent
SEQUENCE_LENGTH = json.loads(%(seq)s)

config = SourceMixtureDatasetConfig.from_yaml(str(HERE / "olmo_core_mixture.yaml"))
config.validate()

if __name__ == "__main__":
    import numpy as np

    if len(sys.argv) != 2:
        sys.exit("usage: python olmo_core_mixture.py DTYPE   (the dtype of your .npy token files)")
    mixture = config.build(npdtype=np.dtype(sys.argv[1]).type, sequence_length=SEQUENCE_LENGTH)
    for source in mixture.sources:
        print(source.name, sum(p.tokens for p in source.path_tokens))
'''


def write(spec: MixtureExport, weights: dict[str, float]) -> dict[str, str]:
    fmt = "olmo-core"
    sources = []
    for d, w in weighted_domains(spec, weights):
        entry: dict[str, Any] = {
            "source_name": d["name"],
            "target_ratio": w,
            "paths": trainer_paths(spec, d, fmt),
        }
        epochs = max_epochs(spec, d["name"])
        if epochs is not None:
            # OLMo-core caps a source at population x max_source_fraction x max_repetition_ratio
            if epochs >= 1:
                entry["max_repetition_ratio"] = epochs
            else:
                entry["max_source_fraction"] = epochs
        sources.append(entry)
    seq = int(constraint(spec, "sequence_length", fmt, "the sequence length"))
    batch = int(constraint(spec, "global_batch_tokens", fmt, "the global batch size in tokens"))
    if batch % seq:
        raise ExportError(
            f"OLMo-core needs global_batch_tokens ({batch}) to be a multiple of sequence_length "
            f"({seq})",
            "constraints.global_batch_tokens",
        )
    config = {
        "source_list": {"sources": sources},
        "requested_tokens": token_budget(spec, fmt),
        "global_batch_size": batch,
        "seed": int(constraint(spec, "seed", fmt, "a seed")),
    }
    script = OLMO_CORE_SCRIPT % {"seq": repr(json.dumps(seq))}
    return {"olmo_core_mixture.yaml": yaml_text(config), "olmo_core_mixture.py": script}
