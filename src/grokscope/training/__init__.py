"""Training: the batched model (`model`, the authors' θ₀ in `init_authors`), its loss and data (`problem`),
optimisers (`optim`), grokking methods (`methods`), the compiled step (`compiled`), the loop that trains,
records, checkpoints and resumes (`loop`; what it takes and gives in `contract`, its per-run record in
`recorder`, the grok rule in `grok`), the memory model of a batched program (`memory`), its live progress bars
(`progress_bars`) and the papers' plain nn.Module reference (`reference`). The loop's names are importable from
here."""

from grokscope.training.contract import EvalInfo, GradTransform, Probe, RunResult
from grokscope.training.grok import GrokState, update_grok
from grokscope.training.loop import stepper, train

__all__ = ["train", "stepper", "Probe", "GradTransform", "EvalInfo", "RunResult", "GrokState", "update_grok"]
