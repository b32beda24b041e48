"""``python -m fisherforecast ...``: the command-line tool (see ``fisherforecast --help``)."""

from ._cli import main

raise SystemExit(main())
