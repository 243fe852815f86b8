"""Tangent cosine every 10 steps in a window around one P3 MLP run's last test-pair flips: train to `start`
without the probe, then resume from that checkpoint to `stop` with the probe every EVERY steps (default 10).

    python window_probe.py SEED START STOP OUT_DIR [WIDTH [EVERY]]   # e.g. 2 26000 28600 win_s2
"""

import json
import sys
from dataclasses import replace

from grokscope.experiments.p3_mlp import MLPExperiment, mlp_configs
from grokscope.geometry.normmin.tangent import tangent_probe
from grokscope.store import TANGENT_TABLE
from grokscope.training import train

if __name__ == "__main__":
    seed, start, stop, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    width, every = (int(sys.argv[5]) if len(sys.argv) > 5 else 128), (int(sys.argv[6]) if len(sys.argv) > 6 else 10)
    exp = replace(MLPExperiment(), seeds=(seed,), steps=start, every=100, eval_every=10, width=width)
    cfg = mlp_configs(exp)[0]
    train([cfg], out, force=True, compile=False)
    res = train([replace(cfg, steps=stop)], out, resume=True, compile=False,
                probes=(tangent_probe(every, 10, 100, 0.9, eval_every=10),))[0]
    m = res.metrics
    te = m[m.split == "test"].groupby("step").acc.min()
    for t, row in res.tables[TANGENT_TABLE].set_index("step").iterrows():
        right = round(float(te.get(t, float("nan"))) * exp.n_test)
        print(json.dumps({"step": int(t), "cos": round(float(row.cos_tangent), 4), "test_correct": right}))
