"""Styling shared by the plots: contour line styles and LaTeX axis labels."""

from __future__ import annotations

from .._checks import check_probabilities

LINESTYLES = ("-", "--", ":", "-.")


def distinct_color(k: int, n: int):
    """The colour of item `k` of `n`, distinct for all `n` items: matplotlib's ``C0…C9``
    up to 10 items, ``tab20`` up to 20, an evenly sampled ``turbo`` colormap beyond.

    ```python
    >>> distinct_color(3, 5), len({distinct_color(k, 12) for k in range(12)})
    ('C3', 12)
    ```
    """
    if n <= 10:
        return f"C{k}"
    import matplotlib

    if n <= 20:
        return matplotlib.colormaps["tab20"](k % 20)
    return matplotlib.colormaps["turbo"](k / max(n - 1, 1))


def tex(label: str) -> str:
    """Wrap a LaTeX label in ``$…$`` for matplotlib unless it already has math or is plain.

    ```python
    >>> tex(r"\\alpha"), tex("$x$"), tex("b")
    ('$\\\\alpha$', '$x$', 'b')
    ```
    """
    if "$" in label:
        return label
    if any(c in label for c in "\\^_{}"):
        return f"${label}$"
    return label


def linestyle(k: int) -> str:
    """The line style of the `k`-th contour level (cycling through :data:`LINESTYLES`)."""
    return LINESTYLES[k % len(LINESTYLES)]


def sorted_levels(levels) -> tuple[float, ...]:
    """2-D probability contents, checked (``InputError`` naming `levels`) and ascending.

    ```python
    >>> sorted_levels((0.9545, 0.6827))
    (0.6827, 0.9545)
    ```
    """
    return tuple(sorted(check_probabilities(levels, what="levels")))
