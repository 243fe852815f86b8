"""Bad input across every command: one line naming the value, exit code 2, nothing written or changed.

Each case runs the CLI in-process (`grokscope.cli.main`) inside its own folder and compares that folder's
tree (paths, sizes, mtimes) before and after. Store-damage cases get a fresh copy of one tiny trained run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from grokscope.cli import main

from cli_args import TINY


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One tiny run (100 steps, p 11), trained once for the module."""
    store = tmp_path_factory.mktemp("trained") / "store"
    assert main(["run", *TINY, "--json", "--out", str(store)]) == 0
    (run,) = [p for p in store.iterdir() if p.is_dir()]
    return run


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path below `root` with its size and mtime (directories too)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            out[os.fsdecode(p)] = (st.st_size if not os.path.isdir(p) else 0, st.st_mtime_ns)
    return out


class Ctx:
    """Paths a case builds its arguments from, all inside the case's own folder."""

    def __init__(self, root: Path, trained: Path) -> None:
        self.root = root
        self.store = root / "store"
        self._trained = trained
        self.file = root / "a-file.txt"
        self.file.write_text("not a folder\n")

    def run(self) -> Path:
        """A fresh copy of the tiny trained run, inside a store."""
        dst = self.store / self._trained.name
        if not dst.exists():
            shutil.copytree(self._trained, dst)
        return dst

    def two_runs(self) -> Path:
        """The store with the tiny run and a copy of it under another name."""
        run = self.run()
        shutil.copytree(run, self.store / f"{run.name}-copy")
        return self.store

    def empty(self) -> Path:
        """An empty folder (no runs in it)."""
        d = self.root / "empty"
        d.mkdir(exist_ok=True)
        return d

    def spec(self, text: str) -> str:
        p = self.root / "spec.yaml"
        p.write_text(text)
        return str(p)

    def grid(self, out: Path | None = None) -> str:
        """A small valid sweep spec storing into `out` (default the case's store)."""
        return GRID.replace("OUT", str(out or self.store))

    def damage(self, name: str, how: str) -> Path:
        """The run copy with file `name` (`trajectory`: its last segment) truncated, replaced by random bytes,
        or emptied."""
        run = self.run()
        f = sorted((run / "trajectory").glob("*.safetensors"))[-1] if name == "trajectory" else run / name
        data = f.read_bytes()
        if how == "truncate":
            f.write_bytes(data[: len(data) // 2])
        elif how == "random":
            f.write_bytes(os.urandom(len(data)))
        else:
            f.write_bytes(b"")
        return run

    def edit_config(self, fn: Callable[[dict], object]) -> Path:
        import json

        run = self.run()
        cfg = json.loads((run / "config.json").read_text())
        fn(cfg)
        (run / "config.json").write_text(json.dumps(cfg))
        return run


def _run(c: Ctx, *argv: str) -> list[str]:
    return ["run", *TINY, "--out", str(c.store), *argv]


GRID = "base: {preset: quick, steps: 50, eval_every: 50, checkpoint_every: 50}\nout: OUT\n"

# (id, argv builder, text the one line must contain)
CASES: list[tuple[str, Callable[[Ctx], list[str]], str]] = [
    # ---- run: values
    ("p-huge", lambda c: _run(c, "--p", "1000000007"), "p=1000000007"),
    ("p-negative", lambda c: _run(c, "--p", "-5"), "p=-5"),
    ("p-not-prime-mul", lambda c: _run(c, "--p", "12", "--tasks", "add,mul"), "p=12"),
    ("train-frac-nan", lambda c: _run(c, "--train-frac", "nan"), "nan"),
    ("train-frac-1", lambda c: _run(c, "--train-frac", "1"), "1.0"),
    ("train-frac-no-pairs", lambda c: _run(c, "--train-frac", "0.001"), "0.001"),
    ("lr-nan", lambda c: _run(c, "--lr", "nan"), "lr=nan"),
    ("lr-inf", lambda c: _run(c, "--lr", "inf"), "lr=inf"),
    ("lr-negative", lambda c: _run(c, "--lr", "0.1,-1"), "lr=-1"),
    ("wd-inf", lambda c: _run(c, "--wd", "inf"), "wd=inf"),
    ("wd-nan", lambda c: _run(c, "--wd", "nan"), "wd=nan"),
    ("wd-negative", lambda c: _run(c, "--wd", "-0.5"), "wd=-0.5"),
    ("steps-0", lambda c: _run(c, "--steps", "0"), "steps=0"),
    ("steps-absurd", lambda c: _run(c, "--steps", "1000000000000"), "steps=1000000000000"),
    ("steps-not-int", lambda c: _run(c, "--steps", "1e3x"), "'1e3x'"),
    ("batch-0", lambda c: _run(c, "--batch", "0"), "batch=0"),
    ("batch-absurd", lambda c: _run(c, "--batch", "100000000000"), "batch=100000000000"),
    ("batch-not-int", lambda c: _run(c, "--batch", "big"), "'big'"),
    ("seeds-empty", lambda c: _run(c, "--seeds", ","), "empty"),
    ("seeds-duplicated", lambda c: _run(c, "--seeds", "1,2,1"), "seed 1"),
    ("seeds-non-numeric", lambda c: _run(c, "--seeds", "1,two"), "'two'"),
    ("seeds-too-large", lambda c: _run(c, "--seeds", str(2**64)), "seed=18446744073709551616"),
    ("wd-duplicated", lambda c: _run(c, "--wd", "0.1,0.1"), "wd 0.1"),
    ("tasks-empty", lambda c: _run(c, "--tasks", ""), "empty"),
    ("tasks-unknown", lambda c: _run(c, "--tasks", "add,pow"), "'pow'"),
    ("tasks-duplicated", lambda c: _run(c, "--tasks", "add,add"), "add"),
    ("heads-not-divisor", lambda c: _run(c, "--heads", "3"), "n_heads=3"),
    ("eval-every-0", lambda c: _run(c, "--eval-every", "0"), "eval_every=0"),
    ("device-unknown", lambda c: _run(c, "--device", "nonsense"), "'nonsense'"),
    ("device-unavailable", lambda c: _run(c, "--device", "cuda"), "'cuda'"),
    ("device-index-unavailable", lambda c: _run(c, "--device", "cuda:7"), "'cuda:7'"),
    ("preset-unknown", lambda c: _run(c, "--preset", "huge"), "'huge'"),
    # ---- run: paths
    ("out-is-a-file", lambda c: ["run", *TINY, "--out", str(c.file)], "a-file.txt"),
    ("out-below-a-file", lambda c: ["run", *TINY, "--out", str(c.file / "sub")], "a-file.txt"),
    ("out-not-utf8", lambda c: ["run", *TINY, "--out", os.fsdecode(os.fsencode(str(c.root)) + b"/st\xffre")],
     "UTF-8"),
    ("out-name-too-long", lambda c: ["run", *TINY, "--out", str(c.root / ("x" * 300))], "too long"),
    ("out-is-a-run", lambda c: ["run", *TINY, "--out", str(c.run())], "is a run directory"),
    # ---- store damage (run resumes from it; analyses read it)
    ("checkpoint-truncated-run", lambda c: [*_run(c), "--resume"] if c.damage("checkpoint.safetensors", "truncate")
     else [], "checkpoint.safetensors"),
    ("checkpoint-random-fragility", lambda c: ["fragility", str(c.damage("checkpoint.safetensors", "random"))],
     "checkpoint.safetensors"),
    ("trajectory-truncated-analyze", lambda c: ["analyze", str(c.damage("trajectory", "truncate")),
                                                "--what", "pca"], ".safetensors is corrupt"),
    ("trajectory-random-intervene", lambda c: ["intervene", str(c.damage("trajectory", "random")),
                                               "--fractions", "0.1", "--steps", "50"], ".safetensors is corrupt"),
    ("metrics-truncated-report", lambda c: ["report", str(c.damage("metrics.parquet", "truncate").parent),
                                            "--out", str(c.root / "rep")], "metrics.parquet"),
    ("metrics-random-runs-show", lambda c: ["runs", "show", str(c.damage("metrics.parquet", "random"))],
     "metrics.parquet"),
    ("summary-empty-runs-list", lambda c: ["runs", "list", str(c.damage("summary.json", "empty").parent)],
     "summary.json"),
    ("config-not-json", lambda c: ["runs", "show", str(c.damage("config.json", "truncate"))], "config.json"),
    ("config-wrong-type", lambda c: ["analyze", str(c.edit_config(lambda d: d["data"].update(p="eleven"))),
                                     "--what", "pca"], "eleven"),
    ("config-bad-value", lambda c: ["fragility", str(c.edit_config(lambda d: d["optim"].update(lr=-1)))],
     "lr=-1"),
    ("config-other-version", lambda c: ["analyze", str(c.edit_config(lambda d: d.update(format=99))),
                                        "--what", "pca"], "format"),
    ("config-list-not-mapping", lambda c: ["runs", "show", str(c.edit_config(lambda d: d["model"].update(
        kind=["trunk"])))], "kind"),
    ("not-a-run", lambda c: ["analyze", str(c.root)], "no grokscope runs"),
    ("missing-run", lambda c: ["fragility", str(c.root / "nope")], "nope"),
    # ---- sweep YAML
    ("yaml-missing", lambda c: ["sweep", str(c.root / "none.yaml")], "none.yaml"),
    ("yaml-malformed", lambda c: ["sweep", c.spec("grid: {wd: [0.1, 0.3\n")], "YAML"),
    ("yaml-empty", lambda c: ["sweep", c.spec("")], "empty"),
    ("yaml-wrong-type", lambda c: ["sweep", c.spec("- 1\n- 2\n")], "mapping"),
    ("yaml-unknown-key", lambda c: ["sweep", c.spec("name: x\ngird: {wd: [0.1]}\n")], "'gird'"),
    ("yaml-bad-value", lambda c: ["sweep", c.spec(c.grid() + "grid: {wd: [0.1, abc]}\n")],
     "'abc'"),
    ("yaml-million-runs", lambda c: ["sweep", c.spec(c.grid() + "grid: {seeds: "
                                                     + str(list(range(1000))) + ", wd: "
                                                     + str([i / 1000 for i in range(1, 1001)]) + "}\n")],
     "1000000 runs"),
    ("sweep-device-unknown", lambda c: ["sweep", c.spec(c.grid()), "--device", "tpu"], "'tpu'"),
    ("sweep-max-runs-0", lambda c: ["sweep", c.spec(c.grid()), "--max-runs", "0"], "max-runs"),
    ("sweep-out-is-a-file", lambda c: ["sweep", c.spec(c.grid(c.file))], "a-file.txt"),
    ("sweep-out-is-a-run", lambda c: ["sweep", c.spec(c.grid(c.run()))], "is a run directory"),
    ("sweep-spec-is-a-folder", lambda c: ["sweep", str(c.empty())], "is a folder"),
    # ---- analysis commands: values
    ("analyze-what-unknown", lambda c: ["analyze", str(c.run()), "--what", "pca,magic"], "'magic'"),
    ("analyze-draws-0", lambda c: ["analyze", str(c.run()), "--draws", "0"], "draws=0"),
    ("analyze-lanczos-iters-0", lambda c: ["analyze", str(c.run()), "--lanczos-iters", "0"], "--lanczos-iters=0"),
    ("analyze-lanczos-tol-nan", lambda c: ["analyze", str(c.run()), "--lanczos-tol", "nan"], "--lanczos-tol=nan"),
    ("analyze-device", lambda c: ["analyze", str(c.run()), "--device", "gpu0"], "'gpu0'"),
    ("intervene-fraction-nan", lambda c: ["intervene", str(c.run()), "--fractions", "0.1,nan"], "nan"),
    ("intervene-fraction-negative", lambda c: ["intervene", str(c.run()), "--fractions", "-0.1"], "-0.1"),
    ("intervene-steps-0", lambda c: ["intervene", str(c.run()), "--steps", "0"], "steps=0"),
    ("intervene-k-0", lambda c: ["intervene", str(c.run()), "--k", "0"], "k=0"),
    ("intervene-out-is-a-file", lambda c: ["intervene", str(c.run()), "--out", str(c.file)], "a-file.txt"),
    ("fragility-threshold", lambda c: ["fragility", str(c.run()), "--threshold", "1.5"], "threshold=1.5"),
    ("fragility-k-0", lambda c: ["fragility", str(c.run()), "--k", "0"], "k=0"),
    ("fragility-device", lambda c: ["fragility", str(c.run()), "--device", "cuda"], "'cuda'"),
    ("normmin-toy-lam-nan", lambda c: ["normmin", "toy", "--lams", "nan"], "nan"),
    ("normmin-toy-lam-negative", lambda c: ["normmin", "toy", "--lams", "-1"], "-1"),
    ("normmin-mlp-steps-0", lambda c: ["normmin", "mlp", "--steps", "0"], "--steps=0 must be > 0"),
    ("normmin-mlp-seeds-dup", lambda c: ["normmin", "mlp", "--seeds", "1,1", "--steps", "10"], "seed 1"),
    ("normmin-decoupled-lr-inf", lambda c: ["normmin", "decoupled", "--lr", "inf"], "inf"),
    ("normmin-out-is-a-file", lambda c: ["normmin", "toy", "--out", str(c.file)], "a-file.txt"),
    ("normmin-run-missing", lambda c: ["normmin", "run", str(c.root / "nope")], "nope"),
    ("normmin-run-given-a-store", lambda c: ["normmin", "run", str(c.run().parent)], "not a grokscope run"),
    ("claims-paper-unknown", lambda c: ["claims", "p9", "--store", str(c.store)], "'p9'"),
    ("claims-device", lambda c: ["claims", "p3", "--store", str(c.store), "--device", "nonsense"], "'nonsense'"),
    ("claims-scale", lambda c: ["claims", "p1", "--store", str(c.store), "--scale", "huge"], "'huge'"),
    ("claims-store-is-a-run", lambda c: ["claims", "p3", "--only", "toy", "--store", str(c.run())],
     "is a run directory"),
    ("claims-plan-store-is-a-run", lambda c: ["claims", "p1", "--plan", "--store", str(c.run())],
     "is a run directory"),
    ("report-missing-store", lambda c: ["report", str(c.root / "nope")], "nope"),
    ("report-empty-folder", lambda c: ["report", str(c.empty())], "no grokscope runs"),
    ("compare-no-runs", lambda c: ["compare", str(c.empty()), "--out", str(c.root / "cmp")], "no grokscope runs"),
    ("compare-missing", lambda c: ["compare", str(c.root / "nope")], "nope"),
    ("runs-warnings-no-runs", lambda c: ["runs", "warnings", str(c.empty())], "no grokscope runs"),
    ("report-null-runs", lambda c: ["report", str(c.run().parent), "--null-runs", "-1"], "--null-runs=-1"),
    ("report-out-is-a-file", lambda c: ["report", str(c.run().parent), "--out", str(c.file)], "a-file.txt"),
    ("runs-show-missing", lambda c: ["runs", "show", str(c.root / "nope")], "nope"),
    ("runs-show-given-a-store", lambda c: ["runs", "show", str(c.two_runs())], "holds 2 runs"),
    ("compare-out-is-a-file", lambda c: ["compare", str(c.run()), "--out", str(c.file)], "a-file.txt"),
    ("tensorboard-out-is-a-file", lambda c: ["runs", "tensorboard", str(c.run()), "--out", str(c.file)],
     "a-file.txt"),
    ("runs-list-file", lambda c: ["runs", "list", str(c.file)], "a-file.txt"),
    ("unknown-command", lambda c: ["trian"], "'trian'"),
]


@pytest.mark.parametrize("case,build,needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input(tmp_path, trained, capsys, monkeypatch, case, build, needle):
    monkeypatch.chdir(tmp_path)  # a command that wrote to its default folder would show in the tree
    c = Ctx(tmp_path, trained)
    argv = build(c)
    before = tree(tmp_path)
    t0 = time.perf_counter()
    code = main(argv)
    took = time.perf_counter() - t0
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, (code, err[-2000:])
    assert len(lines) == 1 and lines[0].startswith("grokscope: error:"), err[-2000:]
    assert err == lines[0] + "\n", repr(err[-2000:])  # nothing else on stderr, not even a blank line
    assert needle in lines[0], lines[0]
    assert "Traceback" not in err and out == "", out
    assert tree(tmp_path) == before
    assert took < 20, f"{case} took {took:.1f} s to refuse"


def test_out_in_read_only_folder(tmp_path, capsys):
    """--out below a read-only mount (a tmpfs mounted ro when we are root; else chmod 555 as a user)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    mounted = False
    if os.geteuid() == 0:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)],
                                 capture_output=True).returncode == 0
        if not mounted:
            pytest.skip("root without mount permission: cannot make a read-only folder")
    else:
        ro.chmod(0o555)
    try:
        before = tree(tmp_path)
        assert main(["run", *TINY, "--out", str(ro / "store")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "ro" in err[0] and "writ" in err[0], err
        assert tree(tmp_path) == before
    finally:
        if mounted:
            subprocess.run(["umount", str(ro)], check=True)
        else:
            ro.chmod(0o755)
