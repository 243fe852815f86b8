"""Norm minimisation on the zero-loss manifold (P3): tangent cosine, decoupled two-layer dynamics, toys.

After memorisation, weight decay pushes θ along the zero-loss set Z = {θ : f(θ) = Y} towards smaller
‖θ‖. P3 measures this as cos(Δθ, g̃) with g̃ = (I − J⁺J)(−θ) the part of −θ tangent to Z (J = Jacobian of
the training outputs), taken at the projection of θ onto Z (`tangent`; on stored runs: `stored`). For a
two-layer net whose readout W₂ = H⁺Y is re-solved each step, the motion of W₁ is gradient flow on
R(W₁) = λ‖W₁‖² + λ Tr(Yᵀ(HHᵀ)⁻¹Y) (P3 §5–7; `decoupled`). P3 §4's toy models are in `toys`; the P3 MLP
training experiment (4.6) is `grokscope.experiments.p3_mlp`.

Conventions chosen here (P3's own text was not available; see docs/normmin.md):
- toy losses are (ŷ − y)² + λ‖w‖²;
- the decoupled simulation uses R exactly as written (λ = 1 by default: with η = 1e-3 and 5000 steps
  anything much smaller does not move W₁ at all);
- the MLP run uses the trainer's loss (MSE mean over examples and outputs) with L2 decay λ‖θ‖²/2·2 as
  torch.optim.SGD (g + wd·θ).
"""

from grokscope.geometry.normmin.decoupled import (
    DecoupledConfig,
    decoupled_data,
    decoupled_grad,
    decoupled_R,
    decoupled_readout,
    decoupled_summary,
    decoupled_update,
    fourier_norms,
    neuron_top_frequency_share,
    simulate_decoupled,
)
from grokscope.geometry.normmin.stored import RunTangentConfig, memorisation_step, norm_vs_decay, run_tangent_cosine
from grokscope.geometry.normmin.tangent import (
    cosine,
    output_fn,
    output_jacobian,
    project_to_zero_loss,
    replay_sgd,
    tangent_probe,
    tangent_projection_cg,
    tangent_projection_dense,
)
from grokscope.geometry.normmin.toys import (
    run_toys,
    toy_grad_linear,
    toy_grad_three,
    toy_linear,
    toy_linear3,
    toy_linear3_limit,
    toy_linear_limit,
    toy_rows,
    toy_three,
    toy_three_limit,
)

__all__ = [
    "output_fn", "output_jacobian", "tangent_projection_dense", "tangent_projection_cg", "project_to_zero_loss",
    "replay_sgd", "cosine", "tangent_probe", "memorisation_step", "norm_vs_decay", "RunTangentConfig",
    "run_tangent_cosine", "decoupled_R", "decoupled_readout", "decoupled_grad", "decoupled_update",
    "fourier_norms",
    "neuron_top_frequency_share", "DecoupledConfig", "decoupled_data", "simulate_decoupled",
    "decoupled_summary", "toy_linear", "toy_linear_limit", "toy_linear3",
    "toy_linear3_limit", "toy_three", "toy_three_limit", "toy_grad_linear",
    "toy_grad_three", "toy_rows", "run_toys",
]
