"""The ``fisherforecast`` command line: results against closed forms, files, errors, exits.

Most cases call :func:`fisherforecast._cli.main` in this process (each subprocess pays a
JAX import); a few run ``python -m fisherforecast`` and the installed console script as
real subprocesses to check the entry points, the exit statuses and stderr.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from helpers import ROOT, linear3

import fisherforecast as ff
from fisherforecast._cli import main

FID_A = {"a": 1.0, "b": 2.0}
FID_B = {"a": 1.0, "c": 3.0, "d": 0.5}


@pytest.fixture
def files(tmp_path):
    A = ff.FisherMatrix(
        [[2.0, 2.0], [2.0, 5.0]], ["a", "b"], FID_A, labels={"a": r"\alpha"}, name="A"
    )
    B = ff.FisherMatrix(np.diag([1.0, 1.0, 3.0]), ["a", "c", "d"], FID_B, name="B")
    A.save(tmp_path / "A.h5")
    B.save(tmp_path / "B.h5")
    return tmp_path


def run(argv, capsys):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_combine_matches_the_closed_form_and_records_the_steps(files, capsys):
    out_path = files / "C.h5"
    argv = ["combine", files / "A.h5", files / "B.h5", "--prior", "c=0.5,d=1", "--fix", "d"]
    status, out, err = run([*argv, "--marginalize", "b", "-o", out_path], capsys)
    assert status == 0, err
    assert "reading" in err and "wrote" in out  # progress on stderr, result on stdout
    # By hand: the sum over (a, b, c, d), priors 1/σ² on c and d, drop d, Schur out b.
    M = np.zeros((4, 4))
    M[:2, :2] += [[2.0, 2.0], [2.0, 5.0]]
    M[np.ix_([0, 2, 3], [0, 2, 3])] += np.diag([1.0, 1.0, 3.0])
    M[2, 2] += 1 / 0.5**2
    M[3, 3] += 1.0
    keep = M[np.ix_([0, 1, 2], [0, 1, 2])]  # d fixed
    cov = np.linalg.inv(keep)[np.ix_([0, 2], [0, 2])]  # b marginalised
    C = ff.load(out_path)
    assert C.names == ("a", "c")
    np.testing.assert_allclose(C.matrix, np.linalg.inv(cov), rtol=1e-12)
    assert C.fiducial == {"a": 1.0, "c": 3.0} and C.labels["a"] == r"\alpha"
    meta = C.metadata
    assert meta["priors"] == {"c": 0.5, "d": 1.0} and meta["marginalized"] == ["b"]
    assert [Path(p).name for p in meta["combined_from"]] == ["A.h5", "B.h5"]
    # The output exists now: refused without --force (unchanged), replaced with it.
    before = out_path.read_bytes()
    status, _, err = run(["combine", files / "A.h5", "-o", out_path], capsys)
    assert status == 1 and "--force" in err and out_path.read_bytes() == before
    status, _, _ = run(["combine", files / "A.h5", "-o", out_path, "--force", "-q"], capsys)
    assert status == 0 and ff.load(out_path).names == ("a", "b")


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["info", "{d}/missing.h5"], ["missing.h5", "no Fisher matrix file"]),
        (["combine", "{d}/A.h5", "--fix", "zeta", "-o", "{d}/X.h5"], ["zeta", "--fix"]),
        (["combine", "{d}/A.h5", "--prior", "q=1", "-o", "{d}/X.h5"], ["'q'", "--prior"]),
        (["combine", "{d}/A.h5", "--marginalize", "a,b", "-o", "{d}/X.h5"], ["every"]),
        (["combine", "{d}/A.h5", "-o", "{d}/nofolder/X.h5"], ["nofolder", "does not exist"]),
        (["plot", "{d}/A.h5", "--params", "a,zz", "-o", "{d}/c.png"], ["zz", "no file has"]),
        (["plot", "{d}/A.h5", "-o", "{d}/c.notanimage"], [".png", "suffix"]),
        (["plot", "{d}/A.h5", "{d}/B.h5", "--legend", "x", "-o", "{d}/c.png"], ["one per file"]),
        (["convert", "{d}/A.h5", "{d}/A.h5"], ["same file"]),
        (["identifiability", "{d}/A.h5", "--params", "nope"], ["nope"]),
    ],
)
def test_failures_exit_1_with_a_message_naming_the_problem(files, capsys, argv, words):
    status, _, err = run([a.format(d=files) for a in argv], capsys)
    assert status == 1
    assert err.strip().splitlines()[-1].startswith(f"fisherforecast {argv[0]}: error:")
    for word in words:
        assert word in err
    assert not (files / "X.h5").exists() and not (files / "c.png").exists()


@pytest.mark.parametrize("argv", [["combine", "A.h5", "--prior", "h"], ["info"], ["frobnicate"]])
def test_bad_command_lines_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "usage: fisherforecast" in capsys.readouterr().err


def test_convert_round_trip_and_getdist_reads_the_paramnames(files, capsys):
    src = ff.load(files / "A.h5")
    status, out, _ = run(["convert", files / "A.h5", files / "A.txt", "-q"], capsys)
    assert status == 0 and "A.txt.paramnames" in out
    lines = (files / "A.txt.paramnames").read_text().splitlines()
    assert lines == ["a\t\\alpha", "b\tb"]  # getdist's two columns: name TAB label
    status, _, _ = run(["convert", files / "A.txt", files / "A2.h5", "-q"], capsys)
    back = ff.load(files / "A2.h5")
    assert status == 0 and back.matrix.tobytes() == src.matrix.tobytes()
    assert (back.names, back.fiducial, back.labels) == (src.names, src.fiducial, src.labels)
    paramnames = pytest.importorskip("getdist.paramnames")
    pn = paramnames.ParamNames(str(files / "A.txt.paramnames"))
    assert pn.list() == ["a", "b"] and pn.parWithName("a").label == r"\alpha"


def test_convert_to_covmat_writes_the_inverse(files, capsys):
    status, out, _ = run(["convert", files / "A.h5", files / "A.covmat", "-q"], capsys)
    assert status == 0 and "A.covmat" in out and not (files / "A.covmat.paramnames").exists()
    assert (files / "A.covmat").read_text().splitlines()[0] == "# a b"
    # closed form: the inverse of [[2, 2], [2, 5]] is [[5, -2], [-2, 2]] / 6
    np.testing.assert_allclose(
        np.loadtxt(files / "A.covmat"), np.array([[5.0, -2.0], [-2.0, 2.0]]) / 6, rtol=1e-15
    )
    status, _, err = run(["convert", files / "A.h5", files / "A.covmat", "-q"], capsys)
    assert status == 1 and "already exists" in err


def test_info_json_sigma_is_the_cramer_rao_bound(files, capsys):
    status, out, _ = run(["info", files / "A.h5", "--json", "-q"], capsys)
    data = json.loads(out)
    sigma = np.sqrt(np.diag(np.linalg.inv([[2.0, 2.0], [2.0, 5.0]])))
    assert status == 0 and data["names"] == ["a", "b"]
    np.testing.assert_allclose([data["sigma"]["a"], data["sigma"]["b"]], sigma, rtol=1e-12)
    status, out, _ = run(["info", files / "A.h5", "-q"], capsys)
    assert "condition number" in out and "0.91287" in out and r"a = \alpha" in out


def test_identifiability_report_relative_crb(files, capsys):
    status, out, _ = run(["identifiability", files / "A.h5", "--json", "-q"], capsys)
    assert status == 0
    report = json.loads(out)
    sigma = np.sqrt(np.diag(np.linalg.inv([[2.0, 2.0], [2.0, 5.0]])))
    crb = report["relative_crb"]
    crb = [crb[n] for n in ("a", "b")] if isinstance(crb, dict) else crb
    np.testing.assert_allclose(crb, sigma / np.array([1.0, 2.0]), rtol=1e-9)


def test_plot_writes_an_image_atomically(files, capsys):
    png = files / "corner.png"
    argv = ["plot", files / "A.h5", files / "B.h5", "--params", "a,b,c", "-o", png, "-q"]
    status, _, err = run(argv, capsys)
    assert status == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in files.iterdir() if p.name.startswith(".")] == []  # no temporaries
    status, _, err = run(argv, capsys)
    assert status == 1 and "--force" in err


def test_petab_without_the_importer_says_so(files, capsys, monkeypatch):
    monkeypatch.delattr(ff, "petab", raising=False)
    monkeypatch.delitem(ff._LAZY, "petab", raising=False)
    yaml = files / "problem.yaml"
    yaml.write_text("format_version: 1\n")
    status, _, err = run(["petab", yaml], capsys)
    assert status == 1 and "PEtab" in err


def test_petab_runs_the_report_through_the_importer_api(files, capsys, monkeypatch):
    """Against the planned API ``ff.petab.load(yaml) -> problem`` with ``.experiments`` and
    ``.nominal``: a stand-in importer returns a linear experiment with a known Fisher."""
    exp = ff.Experiment(linear3, ff.Gaussian(sigma=1.0))
    problem = types.SimpleNamespace(experiments=[exp], nominal={"a": 1.0, "b": 2.0})
    seen = []
    fake = types.SimpleNamespace(load=lambda path: seen.append(path) or problem)
    monkeypatch.setattr(ff, "petab", fake, raising=False)
    yaml = files / "problem.yaml"
    yaml.write_text("format_version: 1\n")
    status, out, err = run(["petab", yaml, "-o", files / "P.h5"], capsys)
    assert status == 0, err
    assert seen == [str(yaml)] and "Identifiability report" in out
    np.testing.assert_allclose(ff.load(files / "P.h5").matrix, [[2.0, 2.0], [2.0, 5.0]])
    # An importer that offers `scale` is asked for linear-scale parameters by default.
    scales = []
    fake.load = lambda path, scale="problem": scales.append(scale) or problem
    assert run(["petab", yaml, "-q"], capsys)[0] == 0
    assert run(["petab", yaml, "-q", "--scale", "problem"], capsys)[0] == 0
    assert scales == ["linear", "problem"]
    status, _, err = run(["petab", files / "absent.yaml"], capsys)
    assert status == 1 and "absent.yaml" in err


def test_demo_runs_the_flagship_example(tmp_path, capsys):
    status, out, _ = run(["demo", "--out", tmp_path, "-q"], capsys)
    assert status == 0 and "combined" in out
    F = ff.load(tmp_path / "quickstart.h5")
    assert set(F.names) == {"A", "tau", "B", "rate", "bkg"}
    assert all(math.isfinite(s) and s > 0 for s in F.sigma().values())
    assert (tmp_path / "quickstart.png").stat().st_size > 0


def _env():
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    env.pop("FISHERFORECAST_CACHE_DIR", None)
    return env


def test_module_entry_point_as_a_subprocess(files):
    """``python -m fisherforecast``: a command works, a failure exits 1 with its message."""
    cmd = [sys.executable, "-m", "fisherforecast"]
    done = subprocess.run(
        [*cmd, "convert", str(files / "A.h5"), str(files / "A.txt")],
        capture_output=True,
        text=True,
        env=_env(),
    )
    assert done.returncode == 0 and (files / "A.txt.paramnames").exists()
    assert "reading" in done.stderr and "wrote" in done.stdout
    done = subprocess.run(
        [*cmd, "info", str(files / "nothere.h5")], capture_output=True, text=True, env=_env()
    )
    assert done.returncode == 1 and "nothere.h5" in done.stderr


def test_every_subcommand_has_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    text = capsys.readouterr().out
    assert exc.value.code == 0 and "usage: fisherforecast" in text
    for name in ("info", "combine", "plot", "convert", "identifiability", "petab", "demo"):
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        assert name in text and f"usage: fisherforecast {name}" in capsys.readouterr().out


def test_console_script_if_installed(tmp_path):
    script = shutil.which("fisherforecast") or str(Path(sys.executable).with_name("fisherforecast"))
    if not Path(script).exists():
        pytest.skip("the console script is not installed (pip install -e . creates it)")
    done = subprocess.run([script, "--version"], capture_output=True, text=True, env=_env())
    assert done.returncode == 0 and done.stdout.startswith("fisherforecast ")


def test_fisher_matrix_from_a_model_survives_the_cli(tmp_path, capsys):
    """A forecast computed by the library, converted to text and back by the CLI, keeps
    its σ (the text format writes floats with repr: exact)."""
    exp = ff.Experiment(
        lambda p, t: p["A"] * jnp.exp(-t / p["tau"]),
        ff.Gaussian(sigma=0.1),
        design=np.linspace(0, 5, 20),
    )
    F = ff.fisher(exp, {"A": 1.0, "tau": 2.0})
    F.save(tmp_path / "F.h5")
    run(["convert", tmp_path / "F.h5", tmp_path / "F.dat", "-q"], capsys)
    run(["convert", tmp_path / "F.dat", tmp_path / "G.h5", "-q"], capsys)
    assert ff.load(tmp_path / "G.h5").sigma() == F.sigma()
