"""P2 (arXiv 2602.16746) claims: low-dimensional execution subspace, transverse curvature, the lead power law,
non-grokking operations and the causal suppression test.

Quick scale: the `quick` preset (1-layer trunk, d_model 64, lr 5e-3) at p = 31 on add, mul and sq_ab (which
P2 says never groks), wd 1, 2 seeds; an lr sweep {2e-3, 5e-3, 1e-2} on add and mul for the lead power law.
Cpu scale: the p2-single preset (p = 97, 4-head 2-layer d128 trunk, lr 1e-3, wd 1) on the four grokking
ops × seeds 42/137/2024 with P2's inline defect (every 100 steps, K = 5), the two non-grokking ops to a
capped 10k steps, and an lr sweep {3e-4, 3e-3, 1e-2} × the four ops at seed 42 (lr 1e-3 from the first).
Paper scale: configs/p2-single.yaml and configs/p2-lr.yaml.

Leads follow P2 §4.3: t_grok = the first evaluation ≥ 90 % test accuracy, onset = P2's threshold rule on
the inline defect (grok_generalization_dynamics.py); "onset precedes grokking" is P2's 12/12 at lr 1e-3
(lead 600–1600, mean 1117); at lr ≥ 3e-3 P2 calls the onset concurrent.

One module per claim group: `sweeps` (the runs and the paper's numbers), `execution_subspace`, `defect_onset` and
`suppression`; every name is importable from this package.
"""

from __future__ import annotations

from grokscope.claims.p2.defect_onset import (
    claim_defect_precedes,
    claim_defect_ratio,
    claim_lead_power_law,
    claim_never_grok,
    claim_onset_concurrent,
    lead_fractions,
)
from grokscope.claims.p2.execution_subspace import (
    PHASES,
    RATIO_PHASE,
    SVD_TABLE,
    claim_exec_random_ratio,
    claim_pc1_single,
    claim_rho,
    control_phase,
    phase_medians,
    svd_ratio,
)
from grokscope.claims.p2.suppression import claim_suppression, scans
from grokscope.claims.p2.sweeps import (
    ALPHA_PARTLY,
    ALPHA_TOL,
    GROKKING,
    NEVER,
    P2_DEFECT,
    PAPER_EXEC_RANDOM,
    PAPER_LEAD_1E3,
    PAPER_LEAD_ALPHA,
    PAPER_LEAD_FRACTION,
    lr_slow_spec,
    lr_slowest_spec,
    lr_spec,
    nongrok_spec,
    single_spec,
)

__all__ = ["GROKKING", "NEVER", "PAPER_LEAD_ALPHA", "PAPER_LEAD_1E3", "PAPER_LEAD_FRACTION", "PAPER_EXEC_RANDOM",
           "ALPHA_TOL", "ALPHA_PARTLY", "P2_DEFECT", "single_spec", "nongrok_spec", "lr_spec", "lr_slow_spec",
           "lr_slowest_spec",
           "claim_pc1_single",
           "claim_rho", "SVD_TABLE", "PHASES", "RATIO_PHASE", "control_phase", "phase_medians", "svd_ratio",
           "claim_exec_random_ratio", "claim_defect_precedes", "claim_onset_concurrent", "claim_defect_ratio",
           "claim_never_grok", "lead_fractions", "claim_lead_power_law", "scans", "claim_suppression", "SWEEPS",
           "CLAIMS"]

# The sweeps P2's claims train, by role; nongrok, lr_slow and lr_slowest are the cpu scale's own (a None spec: not
# at this scale).
SWEEPS = (("single", single_spec), ("nongrok", nongrok_spec), ("lr", lr_spec), ("lr_slow", lr_slow_spec),
          ("lr_slowest", lr_slowest_spec))

CLAIMS = (
    claim_pc1_single,
    claim_rho,
    claim_exec_random_ratio,
    claim_defect_precedes,
    claim_onset_concurrent,
    claim_defect_ratio,
    claim_never_grok,
    claim_lead_power_law,
    claim_suppression,
)
