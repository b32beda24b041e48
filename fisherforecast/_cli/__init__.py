"""The ``fisherforecast`` command-line tool (``python -m fisherforecast``); see :func:`main`."""

from .main import main as main
