"""``python -m infra.cli``: the command line."""

from infra.cli import main

main()
