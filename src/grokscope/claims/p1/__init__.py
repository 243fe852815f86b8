"""P1 (arXiv 2602.18523) claims: multi-task grokking, weight-decay phase structure, fragility,
deletion (dual and tri-task).

Quick scale: the `quick` preset (1-layer trunk, d_model 64) on add+mul at p = 31 (and add+mul+sq), wd
{0, 0.5, 1} × 2 seeds, 3–8k steps (p 31 dual reaches 88–98% test acc by 4k at wd 1).
Paper scale: configs/p1-dual-wd.yaml and p1-tri-wd.yaml
(p = 97, 2-layer d128 trunk, wd {0, 0.1, 0.2, 0.3, 0.5, 1} × seeds {42, 137, 2024}).

One module per claim group: `sweeps` (the runs and the paper's numbers), `phase_structure`, `transverse_instability`,
`fragility` and `deletion`; every name is importable from this package.
"""

from __future__ import annotations

from grokscope.claims.p1.deletion import (
    DELETION_BUDGET,
    DELETION_FAIL,
    DELETION_RECOVER,
    TRI_DELETION_BUDGET,
    TRI_DELETION_VALUES,
    claim_deletion,
    claim_deletion_tri,
    deletion_scan,
    deletion_verdict,
    scans,
    tri_deletion_scan,
    tri_deletion_verdict,
)
from grokscope.claims.p1.fragility import (
    FRAGILITY_WD,
    claim_k_star,
    claim_pc1_alone,
    claim_prune_half,
    claim_scale,
    claim_svd_half,
    fragility_accs,
)
from grokscope.claims.p1.phase_structure import (
    ALPHA_PARTLY,
    ALPHA_TOL,
    GROK_PARTLY,
    GROK_TOL,
    claim_grok_spread,
    claim_grok_steps,
    claim_grok_vs_wd,
    claim_mul_first,
    claim_no_decay,
    claim_tri_order,
    grok_distribution,
    mul_first_verdict,
    paper_alpha,
)
from grokscope.claims.p1.sweeps import (
    CPU_WD0_COST,
    PAPER_GROK,
    PAPER_S42_WD1,
    WIDE_SEEDS,
    dual0_spec,
    dual_spec,
    seeds_spec,
    tri_spec,
)
from grokscope.claims.p1.transverse_instability import (
    CPU_HESSIAN_DRAWS,
    PAPER_LAMBDA_MIN,
    claim_defect_precedes,
    claim_lambda_min,
    claim_pc1_dual,
    claim_pc1_tri,
    claim_rho,
    depth_sampling_test,
)

__all__ = ["PAPER_GROK", "PAPER_S42_WD1", "CPU_WD0_COST", "WIDE_SEEDS", "dual_spec", "dual0_spec",
           "seeds_spec", "tri_spec", "GROK_TOL", "GROK_PARTLY", "ALPHA_TOL", "ALPHA_PARTLY", "paper_alpha",
           "claim_grok_vs_wd", "claim_grok_steps", "claim_grok_spread", "grok_distribution", "claim_no_decay",
           "mul_first_verdict", "claim_mul_first", "claim_tri_order", "PAPER_LAMBDA_MIN", "claim_pc1_dual",
           "claim_pc1_tri", "claim_rho", "claim_defect_precedes", "claim_lambda_min", "depth_sampling_test",
           "CPU_HESSIAN_DRAWS", "FRAGILITY_WD", "claim_k_star",
           "claim_pc1_alone", "fragility_accs", "claim_svd_half", "claim_prune_half", "claim_scale", "DELETION_FAIL",
           "DELETION_RECOVER", "DELETION_BUDGET", "deletion_verdict", "deletion_scan", "scans", "claim_deletion",
           "TRI_DELETION_VALUES", "TRI_DELETION_BUDGET", "tri_deletion_scan", "tri_deletion_verdict",
           "claim_deletion_tri",
           "SWEEPS", "CLAIMS"]

# The sweeps P1's claims train, by role (`--specs` replaces any of them); a None spec: not at this scale.
SWEEPS = (("dual", dual_spec), ("dual0", dual0_spec), ("seeds", seeds_spec), ("tri", tri_spec))

CLAIMS = (
    claim_grok_vs_wd,
    claim_grok_steps,
    claim_grok_spread,
    claim_no_decay,
    claim_mul_first,
    claim_tri_order,
    claim_pc1_dual,
    claim_pc1_tri,
    claim_rho,
    claim_defect_precedes,
    claim_lambda_min,
    claim_k_star,
    claim_pc1_alone,
    claim_svd_half,
    claim_prune_half,
    claim_scale,
    claim_deletion,
    claim_deletion_tri,
)
