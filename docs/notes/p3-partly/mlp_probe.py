"""P3 MLP with the tangent-cosine probe: where the cosine peaks vs when test pairs flip, per variant.

    python mlp_probe.py '{"steps": 20000, "wd": 0.0002}'       # any MLPExperiment field; probe every 100
"""

import json
import sys
import time
from dataclasses import replace

from grokscope.experiments.p3_mlp import MLPExperiment, run_mlp

if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    kw = {k: (tuple(v) if k == "seeds" else v) for k, v in spec.items()}
    exp = replace(MLPExperiment(), **{"every": 100, "eval_every": 10, **kw})
    t0 = time.time()
    out = run_mlp(exp)
    tab = out["table"]
    for s, res in zip(out["seeds"], out["results"]):
        m = res.metrics
        te = m[m.split == "test"].groupby("step").acc.min()
        n = exp.n_test
        first_k = {k: (int(te[te >= k / n - 1e-9].index[0]) if (te >= k / n - 1e-9).any() else None)
                   for k in range(1, n + 1)}
        d = tab[tab.seed == s["seed"]].set_index("step").cos_tangent
        sm = d.rolling(5, center=True, min_periods=1).mean()
        print(json.dumps({**spec, "seed": s["seed"], "mem": s["mem_step"], "grok": s["grok_step"],
                          "peak": s["peak_step"], "peak_cos": round(s["peak_cos"], 3), "first_k": first_k,
                          "final": round(s["test_acc_final"], 3),
                          "cos_at": {int(t): round(float(sm[t]), 2) for t in sm.index if t % 1000 == 0}}), flush=True)
    print(json.dumps({"wall_s": round(time.time() - t0, 1)}))
