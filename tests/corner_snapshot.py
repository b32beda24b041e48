"""Geometry snapshot of one corner plot (FisherMatrix + samples), for the regression test.

`snapshot(contours)` renders the plot and flattens what it draws into a dict of arrays:
every line's data, every contour's path vertices, the histogram outlines, axis limits,
axis labels and the legend. ``python tests/corner_snapshot.py`` rewrites the stored
reference ``tests/data/corner_reference.npz`` (only do that for an intended change).
"""

from __future__ import annotations

import pathlib

import matplotlib
import numpy as np

matplotlib.use("Agg")

REFERENCE = pathlib.Path(__file__).parent / "data" / "corner_reference.npz"
MODES = ("whitened", "corner")


def _inputs():
    import fisherforecast as ff

    M = np.array([[2.0, 2.0, 0.0], [2.0, 5.0, 1.0], [0.0, 1.0, 3.0]])
    fid = {"a": 1.0, "b": 2.0, "c": 0.0}
    F = ff.FisherMatrix(M, ["a", "b", "c"], fiducial=fid, labels={"a": r"\alpha"}, name="exp")
    rng = np.random.default_rng(7)
    x = rng.multivariate_normal(list(fid.values()), np.linalg.inv(M), size=8000)
    return {"Fisher": F, "HMC": {"a": x[:, 0], "b": x[:, 1], "c": x[:, 2]}}


def snapshot(contours: str) -> dict[str, np.ndarray]:
    import matplotlib.pyplot as plt

    import fisherforecast as ff

    fig = ff.plot.corner(_inputs(), contours=contours, fill=contours == "corner", bins=25)
    out: dict[str, np.ndarray] = {}
    for k, ax in enumerate(fig.axes):
        key = f"ax{k}"
        out[f"{key}/xlim"] = np.array(ax.get_xlim())
        out[f"{key}/ylim"] = np.array(ax.get_ylim())
        out[f"{key}/labels"] = np.array([ax.get_xlabel(), ax.get_ylabel()])
        out[f"{key}/frame"] = np.array([ax.get_frame_on()])
        for m, line in enumerate(ax.get_lines()):
            out[f"{key}/line{m}"] = np.asarray(line.get_xydata(), dtype=np.float64)
            out[f"{key}/line{m}/style"] = np.array(
                [str(line.get_gid()), str(line.get_linestyle()), str(line.get_color())]
            )
        for m, coll in enumerate(ax.collections):
            for p, path in enumerate(coll.get_paths()):
                out[f"{key}/coll{m}/path{p}"] = np.asarray(path.vertices, dtype=np.float64)
        for m, patch in enumerate(ax.patches):
            out[f"{key}/patch{m}"] = np.asarray(patch.get_path().vertices, dtype=np.float64)
    legend = fig.legends[0]
    out["legend"] = np.array([t.get_text() for t in legend.get_texts()])
    out["legend/title"] = np.array([legend.get_title().get_text()])
    out["figsize"] = np.array(fig.get_size_inches())
    plt.close(fig)
    return {f"{contours}:{k}": v for k, v in out.items()}


if __name__ == "__main__":
    ref: dict[str, np.ndarray] = {}
    for mode in MODES:
        ref.update(snapshot(mode))
    REFERENCE.parent.mkdir(exist_ok=True)
    np.savez_compressed(REFERENCE, **ref)
    print(f"wrote {len(ref)} arrays to {REFERENCE}")
