"""The ``neuralsolve`` command (console script ``neuralsolve = "neuralsolve.cli:main"``, or
``python -m neuralsolve.cli``).

Modules: :mod:`.app` (the parser; ``solve``, ``bench``, ``methods``, ``problems``, ``info``),
:mod:`.operators` (``data``, ``train operator``, ``eval``), :mod:`.dcdm` (``train dcdm``) and
:mod:`._common` (``--threads``, ``--set key=value``). Nothing in the package imports the CLI.
"""

from __future__ import annotations

from .app import build_parser, main

__all__ = ["build_parser", "main"]
