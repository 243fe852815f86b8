"""Training: the batched model (`model`, the authors' θ₀ in `init_authors`), its loss and data (`problem`),
optimisers (`optim`), grokking methods (`methods`), the compiled step (`compiled`), the loop that trains,
records, checkpoints and resumes (`loop`), its live progress bars (`progress_bars`) and the papers' plain
nn.Module reference (`reference`). The loop's names are importable from here."""

from grokscope.training.loop import (
    EvalInfo,
    GradTransform,
    GrokState,
    Probe,
    RunResult,
    stepper,
    train,
    update_grok,
)

__all__ = ["train", "stepper", "Probe", "GradTransform", "EvalInfo", "RunResult", "GrokState", "update_grok"]
