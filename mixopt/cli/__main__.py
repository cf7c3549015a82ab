"""``python -m mixopt.cli``: the ``mixopt`` command."""

from mixopt.cli import main

main()
