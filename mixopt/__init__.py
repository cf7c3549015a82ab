"""mixopt: data-mixture optimisation for language-model pretraining.

``mixopt.client.MixoptClient`` talks to the HTTP API; the ``mixopt`` command is ``mixopt.cli``.
"""

__version__ = "0.1.0"
