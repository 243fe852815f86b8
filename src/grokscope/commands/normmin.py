"""`grokscope normmin {mlp,decoupled,toy,run RUN_DIR}`: P3's norm minimisation on the zero-loss manifold."""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from grokscope.commands.common import csv_list, print_json
from grokscope.config import check_axis
from grokscope.errors import ConfigError, StoreError
from grokscope.experiments.p3_mlp import MLPExperiment, run_mlp
from grokscope.geometry import normmin as N
from grokscope.store import RunDir, atomic_write, check_out
from grokscope.training.progress_bars import working


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("normmin", help="P3: tangent cosine, decoupled two-layer dynamics, toy models")
    verbs = p.add_subparsers(dest="normmin_cmd", metavar="EXPERIMENT")

    def common(q: argparse.ArgumentParser, seeds: bool = True, steps: bool = True, out: str = "PNG figures") -> None:
        q.add_argument("--json", action="store_true", help="print only JSON on stdout")
        q.add_argument("--out", default=None, help=f"folder for the {out} (default: none written)")
        if seeds:
            q.add_argument("--seeds", type=csv_list(int), default=None, help="comma-separated seeds")
        if steps:
            q.add_argument("--steps", type=int, default=None, help="override the number of steps")
        q.set_defaults(func=run)

    mlp = verbs.add_parser("mlp", help="P3 exp. 4.6: mod-11 MLP, cos(Δθ, tangent of -θ) during grokking")
    common(mlp, out="runs and PNG figures")
    mlp.add_argument("--every", type=int, default=None, help="probe interval in steps (default 1, as P3)")
    mlp.add_argument("--n-test", type=int, default=None, help="held-out pairs (default 7 of the 66 a ≤ b)")
    dec = verbs.add_parser("decoupled", help="P3 §7: W₂ = H⁺Y, W₁ follows -∇R; p=37, d_h 512")
    common(dec)
    dec.add_argument("--lam", type=float, default=None, help="λ in R (default 1)")
    dec.add_argument("--lr", type=float, default=None, help="η (default 1e-3)")
    dec.add_argument("--dtype", choices=("float64", "float32"), default=None, help="default float64")
    toy = verbs.add_parser("toy", help="P3 §4: ŷ = w₁x₁ + w₂x₂ on 1 + 1 = 2, ŷ = w₁x₁ + w₂x₂ + w₃x₃ on 3")
    common(toy, seeds=False)
    toy.add_argument("--lams", type=csv_list(float), default=None,
                     help="comma-separated λ (default 0.01,0.1,0.2)")
    rd = verbs.add_parser("run", help="tangent cosine and norm-vs-decay of a stored run")
    rd.add_argument("run_dir", metavar="RUN_DIR", help="a run directory")
    common(rd, seeds=False, steps=False)
    rd.set_defaults(steps=None)
    rd.add_argument("--subsample", type=int, default=64, help="training examples in J (default 64)")
    rd.add_argument("--cg-iters", type=int, default=100, help="conjugate-gradient steps on JJᵀ (default 100)")
    rd.add_argument("--max-snapshots", type=int, default=None,
                    help="at most N snapshot pairs, evenly spaced (default: every stored one)")
    rd.add_argument("--project-steps", type=int, default=0,
                    help="GD steps (λ=0, momentum 0.9) towards Z before taking J (default 0: J at θ)")
    p.set_defaults(func=lambda a: (p.print_help(), 0)[1])


def _clean(obj: Any) -> Any:
    """JSON-safe: NaN -> None, tuples -> lists, numpy scalars -> Python."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _outdir(args: argparse.Namespace) -> Path | None:
    if args.out is None:
        return None
    return check_out(args.out)  # created when the first file is written


def _positive(name: str, v: int | float | None) -> None:
    if v is not None and not (math.isfinite(v) and v > 0):
        raise ConfigError(f"{name}={v} must be > 0 and finite")


def run(args: argparse.Namespace) -> int:
    cmd = args.normmin_cmd
    handlers = {"mlp": _mlp, "decoupled": _decoupled, "toy": _toy, "run": _run}
    _positive("--steps", args.steps)
    check_axis("seed", getattr(args, "seeds", None) or ())
    out = _outdir(args)
    with working(f"[bold]normmin {cmd}", not args.json):
        result = handlers[cmd](args, out)
    if args.json:
        print_json(_clean(result))
    else:
        _print(cmd, result)
    return 0


# ---- experiments -------------------------------------------------------------------------------------

def _mlp(args: argparse.Namespace, out: Path | None) -> dict[str, Any]:
    exp = MLPExperiment()
    over: dict[str, Any] = {}
    if args.seeds:
        over["seeds"] = tuple(args.seeds)
    if args.steps:
        over["steps"] = args.steps
    if args.every:
        _positive("--every", args.every)
        over["every"] = args.every
        over["eval_every"] = math.gcd(args.every, exp.horizon)
    if args.n_test is not None:
        over["n_test"] = args.n_test
    exp = replace(exp, **over)
    res = run_mlp(exp, str(out / "runs") if out is not None else None)
    if out is not None:
        _fig_mlp(res, out / "normmin_mlp.png")
    table = res["table"]
    return {"experiment": "mlp", "config": asdict(exp), "wall_s": round(res["wall_s"], 2),
            "seeds": res["seeds"],
            "trajectory": table[["seed", "step", "cos_tangent", "cos_decay", "weight_norm", "train_acc",
                                 "test_acc", "loss_star"]].to_dict("records")}


def _decoupled(args: argparse.Namespace, out: Path | None) -> dict[str, Any]:
    cfg = N.DecoupledConfig()
    over: dict[str, Any] = {}
    if args.seeds:
        over["seeds"] = tuple(args.seeds)
    if args.steps:
        over["steps"] = args.steps
    for k, v in (("lam", args.lam), ("lr", args.lr)):
        if v is not None:
            _positive(f"--{k}", v)
            over[k] = v
    if args.dtype:
        over["dtype"] = args.dtype
    cfg = replace(cfg, **over)
    sim = N.simulate_decoupled(cfg)
    if out is not None:
        _fig_decoupled(sim, out / "normmin_decoupled.png")
    re1, im1 = sim["fourier_final"]
    h = sim["history"]
    return {"experiment": "decoupled", "config": asdict(cfg), "wall_s": round(sim["wall_s"], 2),
            "seeds": N.decoupled_summary(sim),
            "mean_test_acc": h.groupby("step").test_acc.mean().reset_index().to_dict("records"),
            "fourier_final": {"re": re1.tolist(), "im": im1.tolist()}}


def _toy(args: argparse.Namespace, out: Path | None) -> dict[str, Any]:
    lams = tuple(args.lams) if args.lams else (0.01, 0.1, 0.2)
    for lam in lams:
        if not (math.isfinite(lam) and lam >= 0):
            raise ConfigError(f"λ={lam} must be a finite number >= 0")
    res = N.run_toys(lams, args.steps)
    if out is not None:
        _fig_toy(res, out / "normmin_toy.png")
    return {"experiment": "toy", "wall_s": round(res["wall_s"], 3), "rows": res["rows"]}


def _run(args: argparse.Namespace, out: Path | None) -> dict[str, Any]:
    run = RunDir(args.run_dir)
    if not run.exists():
        raise StoreError(f"{args.run_dir} is not a grokscope run (no config.json)")
    _positive("--subsample", args.subsample)
    _positive("--cg-iters", args.cg_iters)
    if args.max_snapshots is not None:
        _positive("--max-snapshots", args.max_snapshots)
    if args.project_steps < 0:
        raise ConfigError(f"--project-steps={args.project_steps} must be >= 0")
    t0 = time.perf_counter()
    opts = N.RunTangentConfig(subsample=args.subsample, cg_iters=args.cg_iters,
                              max_snapshots=args.max_snapshots, project_steps=args.project_steps)
    cos = N.run_tangent_cosine(run, opts)
    norms, info = N.norm_vs_decay(run)
    if out is not None:
        _fig_run(cos, norms, info, out / f"normmin_{run.path.name}.png")
    peak = cos.loc[cos.cos_tangent.idxmax()] if len(cos) else None
    return {"experiment": "run", "run": str(run.path), "wall_s": round(time.perf_counter() - t0, 2),
            "norm": info,
            "peak_step": int(peak.step) if peak is not None else None,
            "peak_cos": float(peak.cos_tangent) if peak is not None else None,
            "tangent_cosine": cos.to_dict("records"),
            "norm_vs_decay": norms.dropna().to_dict("records")}


# ---- printing and figures ----------------------------------------------------------------------------

def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _print(cmd: str, res: dict[str, Any]) -> None:
    print(f"normmin {cmd}  ({res['wall_s']} s)")
    if cmd == "mlp":
        keys = ("seed", "mem_step", "grok_step_90", "grok_step", "peak_step", "peak_cos", "cos_before_mem",
                "cos_mem_to_grok", "cos_after_grok", "norm_at_mem", "norm_at_grok", "test_acc_final")
        rows = res["seeds"]
    elif cmd == "decoupled":
        keys = ("seed", "last_chance_step", "first_90_step", "first_100_step", "test_acc_final",
                "w1_norm_final", "top3_power_share_init", "top3_power_share_final", "neuron_top1_share_init",
                "neuron_top1_share_final")
        rows = res["seeds"]
    elif cmd == "toy":
        keys = ("model", "lam", "w_final", "limit", "dist_final", "fit_step", "near_limit_step")
        rows = res["rows"]
    else:
        info = res["norm"]
        print("  " + "  ".join(f"{k}={_fmt(v)}" for k, v in info.items()))
        print(f"  tangent cosine peaks at step {res['peak_step']} (cos {_fmt(res['peak_cos'])})")
        keys = ("step", "cos_tangent", "cos_decay", "tangent_frac", "cg_residual", "weight_norm")
        rows = res["tangent_cosine"]
    print("  " + "  ".join(keys))
    for r in rows:
        print("  " + "  ".join(_fmt(r.get(k)) for k in keys))


def _save(fig: Figure, path: Path) -> None:
    """Lay the figure out and write it as a PNG, atomically."""
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))


def _figure(nrows: int, ncols: int, figsize: tuple[float, float], sharex: bool = False) -> tuple[Figure, Any]:
    """A matplotlib Figure on the Agg canvas (no pyplot state) and its axes."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, sharex=sharex)


def _fig_mlp(res: dict[str, Any], path: Path) -> None:
    t = res["table"]
    fig, ax = _figure(3, 1, (8, 9), sharex=True)
    for seed, d in t.groupby("seed"):
        ax[0].plot(d.step, d.cos_tangent, label=f"seed {seed}")
        ax[1].plot(d.step, d.weight_norm)
        ax[2].plot(d.step, d.test_acc)
    for row in res["seeds"]:
        for a in ax:
            if row["grok_step"] is not None:
                a.axvline(row["grok_step"], color="k", lw=0.5, ls="--")
            if row["mem_step"] is not None:
                a.axvline(row["mem_step"], color="r", lw=0.5, ls=":")
    ax[0].set_ylabel("cos(Δθ, g̃)")
    ax[1].set_ylabel("‖θ‖")
    ax[2].set_ylabel("test acc")
    ax[2].set_xlabel("step (dotted: memorised, dashed: grokked)")
    ax[0].legend(fontsize=7)
    _save(fig, path)


def _fig_decoupled(sim: dict[str, Any], path: Path) -> None:
    h, cfg = sim["history"], sim["config"]
    fig, ax = _figure(1, 3, (14, 4))
    for seed, d in h.groupby("seed"):
        ax[0].plot(d.step, d.test_acc, label=f"seed {seed}")
        ax[1].plot(d.step, d.w1_norm)
    ax[0].set_xlabel("step")
    ax[0].set_ylabel("test acc")
    ax[0].legend(fontsize=7)
    ax[1].set_xlabel("step")
    ax[1].set_ylabel("‖W₁‖")
    re, im = sim["fourier_final"]
    k = range(re.shape[-1])
    ax[2].bar([i - 0.2 for i in k], re[0].tolist(), width=0.4, label="‖Re F_k‖")
    ax[2].bar([i + 0.2 for i in k], im[0].tolist(), width=0.4, label="‖Im F_k‖")
    ax[2].set_xlabel(f"frequency k (seed {cfg.seeds[0]}, final W₁)")
    ax[2].legend(fontsize=7)
    _save(fig, path)


def _fig_toy(res: dict[str, Any], path: Path) -> None:
    fig, ax = _figure(1, 2, (11, 4.5))
    lin, lin3 = res["linear"], res["linear3"]
    for i, lam in enumerate(lin["lams"]):
        ax[0].plot(lin["w"][i, :, 0], lin["w"][i, :, 1], label=f"λ={lam:g}")
        ax[1].plot(lin3["steps"], lin3["w"][i, :, 0], label=f"w₁, λ={lam:g}")
    xs = [-1.2, 2.2]
    ax[0].plot(xs, [2 - x for x in xs], "k:", lw=0.8, label="w₁ + w₂ = 2")
    ax[0].plot([1], [1], "k*", ms=10)
    ax[0].set_xlabel("w₁")
    ax[0].set_ylabel("w₂")
    ax[0].legend(fontsize=7)
    ax[1].axhline(1.0, color="k", ls=":", lw=0.8)
    ax[1].set_xlabel("step")
    ax[1].set_ylabel("toy 2 (w₁ + w₂ + w₃ = 3): w₁ (dotted: 1)")
    ax[1].legend(fontsize=7)
    _save(fig, path)


def _fig_run(cos: Any, norms: Any, info: dict[str, Any], path: Path) -> None:
    fig, ax = _figure(2, 1, (8, 7), sharex=True)
    ax[0].plot(cos.step, cos.cos_tangent, label="cos(Δθ, g̃)")
    ax[0].plot(cos.step, cos.cos_decay, label="cos(Δθ, −θ)")
    ax[0].legend(fontsize=7)
    ax[1].plot(norms.step, norms.weight_norm, label="‖θ‖")
    if "pure_decay" in norms:
        ax[1].plot(norms.step, norms.pure_decay, ls="--", label="pure decay from t_mem")
    ax[1].legend(fontsize=7)
    for a in ax:
        for key, style in (("mem_step", ":"), ("grok_step", "--")):
            if info.get(key) is not None:
                a.axvline(info[key], color="k", lw=0.6, ls=style)
    ax[1].set_xlabel("step")
    _save(fig, path)
