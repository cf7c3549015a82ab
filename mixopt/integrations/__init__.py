"""Trainer integrations: callbacks that report a run to a mixopt project and follow an online
session, and imports of runs tracked elsewhere.

* :mod:`mixopt.integrations.huggingface`: ``MixoptCallback``, a ``transformers.TrainerCallback``
  (``pip install 'mixopt[hf]'``);
* :mod:`mixopt.integrations.lightning`: ``MixoptCallback``, a ``lightning.pytorch.Callback``
  (``pip install 'mixopt[lightning]'``);
* :mod:`mixopt.integrations.olmo_core`: ``MixoptCallback``, an OLMo-core ``Callback``
  (``pip install ai2-olmo-core``);
* :mod:`mixopt.integrations.sampling`: the :class:`MixtureSampler` the trainer draws from and
  whose weights a callback changes; :mod:`mixopt.integrations.reporter`: what all callbacks do;
* :mod:`mixopt.integrations.mlflow_import`, :mod:`mixopt.integrations.wandb_import`: runs of an
  MLflow tracking store or a W&B export as mixopt runs (``mixopt runs import-mlflow``,
  ``mixopt runs import-wandb``).

Every module imports without the trainer libraries; the trainer-specific classes are built on
first use and raise :class:`mixopt.extras.MissingExtra` (the CLI's exit code 3) naming the
``pip install`` when their library is absent.
"""

from mixopt.integrations.reporter import MixoptReporter
from mixopt.integrations.sampling import MixtureSampler, mixture_dataset

__all__ = ["MixoptReporter", "MixtureSampler", "mixture_dataset"]
