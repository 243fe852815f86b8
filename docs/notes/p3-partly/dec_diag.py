"""P3 decoupled-dynamics diagnostics: chance / perfect steps per (init std, step, width, train frac, dtype).

    python dec_diag.py '{"runs": [{"seeds": [0], "steps": 3000, "init_std": 0.405}]}'   # any DecoupledConfig field
"""

import json
import sys
import time
from dataclasses import replace

from grokscope.geometry.normmin import DecoupledConfig, decoupled_summary, simulate_decoupled

if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    for kw in spec["runs"]:
        cfg = replace(DecoupledConfig(), **{k: (tuple(v) if k == "seeds" else v) for k, v in kw.items()})
        t0 = time.time()
        sim = simulate_decoupled(cfg)
        rows = decoupled_summary(sim)
        h = sim["history"]
        w1 = h.groupby("step").w1_norm.mean()
        acc = h.groupby("step").test_acc.mean()
        print(json.dumps({**kw, "chance": [r["last_chance_step"] for r in rows],
                          "p90": [r["first_90_step"] for r in rows], "p100": [r["first_100_step"] for r in rows],
                          "final": [round(r["test_acc_final"], 3) for r in rows],
                          "w1_0": float(w1.iloc[0]), "w1_final": float(w1.iloc[-1]),
                          "w1_at": {int(s): round(float(w1[s]), 2) for s in w1.index if s % 250 == 0},
                          "acc_at": {int(s): round(float(acc[s]), 3) for s in acc.index if s % 250 == 0},
                          "wall_s": round(time.time() - t0, 1)}), flush=True)
