"""P3 MLP diagnostics without the probe: per (init seed, split seed, lr, wd) the memorisation step, grok step,
the step at which k of the 7 test pairs are first right, and which test pairs are still wrong at the end.

    python mlp_diag.py '{"steps": 30000, "runs": [{"init": 0, "split": 0}, {"init": 2, "split": 0, "wd": 2e-4}]}'
"""

import json
import sys
import time

from grokscope.config import validate, with_overrides
from grokscope.data.tasks import make_split
from grokscope.experiments.p3_mlp import MLPExperiment, mlp_configs
from grokscope.geometry.normmin.stored import memorisation_step
from grokscope.training import model as M
from grokscope.training import train


def first_steps(te, n):
    """Step at which k of the n test pairs are first right, k = 1..n (None if never)."""
    return {k: (int(te[te >= k / n - 1e-9].index[0]) if (te >= k / n - 1e-9).any() else None)
            for k in range(1, n + 1)}


def wrong_pairs(res):
    """The test pairs the final model gets wrong."""
    c = res.config
    sp = make_split(("add",), c.data.p, c.data.train_frac, c.split_seed, exclude_zero=False, unordered=True)
    pairs, targets = sp.pairs[sp.test_idx], sp.targets[sp.test_idx, 0]
    out = M.forward({k: v[None] for k, v in res.params.items()}, pairs[None], c.model, c.data)[0, :, 0]
    return [tuple(pairs[i].tolist()) for i in range(len(pairs)) if out[i].argmax() != targets[i]]


def runs(specs, steps, eval_every=10, width=128):
    exp = MLPExperiment(steps=steps, eval_every=eval_every, every=eval_every * 10, horizon=eval_every, width=width)
    base = mlp_configs(exp)[0]
    cfgs = [validate(with_overrides(base, seed=s["init"], data_seed=s["split"], lr=s.get("lr", 1.0),
                                    wd=s.get("wd", 1e-4))) for s in specs]
    t0 = time.time()
    out = []
    for s, r in zip(specs, train(cfgs, None, compile=False)):
        m = r.metrics
        te = m[m.split == "test"].groupby("step").acc.min()
        out.append({**s, "mem": memorisation_step(m), "grok": next(iter(r.summary["grok_step"].values())),
                    "grok90": next(iter(r.summary["grok_step_90"].values())), "final": float(te.iloc[-1]),
                    "wrong": wrong_pairs(r), "first_k": first_steps(te, exp.n_test),
                    "acc_at": {int(t): round(float(te[t]) * exp.n_test) for t in te.index if t % 2000 == 0},
                    "norm_final": float(m.groupby("step").weight_norm.first().iloc[-1])})
    return out, time.time() - t0


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    res, wall = runs(spec["runs"], spec["steps"], spec.get("eval_every", 10), spec.get("width", 128))
    for r in res:
        print(json.dumps(r))
    print(json.dumps({"wall_s": wall}))
