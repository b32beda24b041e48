"""Progress bars and cost estimates for the long analyses (tqdm; ``progress=`` switch).

Profiles, designs, cross-checks, coverage runs and symmetry searches take ``progress``:
``None`` (default: show a bar when stderr is a terminal, so scripts and tests stay
quiet), ``True`` or ``False``. The bar starts with a line estimating the work (model
evaluations, compiled scans) so that a long run says up front what it will cost; most of
the time of a first call is compilation, which the estimate names.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

from ._errors import InputError, quote

__all__ = ["check_progress", "progress_bar"]


def check_progress(progress) -> bool:
    """``None`` -> whether stderr is a terminal; ``True``/``False`` as given."""
    if progress is None:
        stream = sys.stderr
        return bool(getattr(stream, "isatty", lambda: False)())
    if isinstance(progress, bool):
        return progress
    raise InputError(
        f"`progress` must be None (a bar when run in a terminal), True or False; received "
        f"{quote(progress)}."
    )


class _Quiet:
    """The bar when progress is off: every call does nothing."""

    def update(self, n=1):
        return None

    def set_postfix_str(self, text, refresh=True):
        return None

    def write(self, text):
        return None


@contextmanager
def progress_bar(enabled: bool, total: int, desc: str, unit: str, estimate: str = ""):
    """A tqdm bar of `total` steps (or a do-nothing stand-in), preceded by the cost
    `estimate` line when given; closed on exit."""
    if not enabled:
        yield _Quiet()
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=True)
    if estimate:
        bar.write(f"{desc}: {estimate}", file=sys.stderr)
    try:
        yield bar
    finally:
        bar.close()
