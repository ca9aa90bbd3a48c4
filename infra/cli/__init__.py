"""The ``voicestream`` command line; every command has ``--help`` with defaults.

One group (:mod:`infra.cli.base`) and a module per kind of command: running
(``up``, ``skills``, ``demo``, ``cluster``, ``broker``), device (``send``,
``context``, ``listen``, ``devices``), recording (``record``, ``replay``) and
modelling (``models``, ``train``, ``eval``).
"""

from infra.cli import device, modelling, recording, rewriting, running  # noqa: F401  (register commands)
from infra.cli.base import main

__all__ = ["main"]
