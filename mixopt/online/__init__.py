"""Online data-mixing algorithms (pure: numpy; torch only in the trainer adapters).

``ONLINE_MIXERS`` maps a name to its class; ``make_mixer(name, domains, params,
initial_weights, seed)`` builds one and ``load_mixer(state)`` restores one from JSON state.
"""

from mixopt.online import aioli, doremi, odm  # noqa: F401  (register the mixers)
from mixopt.online.base import ONLINE_MIXERS, OnlineMixer, load_mixer, make_mixer
from mixopt.online.reweighting import sample_weights

__all__ = ["ONLINE_MIXERS", "OnlineMixer", "load_mixer", "make_mixer", "sample_weights"]
