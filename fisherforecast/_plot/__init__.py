"""Building blocks of :func:`fisherforecast.plot.corner` (private; the public module is
:mod:`fisherforecast.plot`). matplotlib and corner are imported inside the functions."""
