"""The early-warning figure: per monitored run, the detector's score at each measurement against its threshold,
the warning, the predicted grokking window and the grok step (a pure function: views in, a Figure out)."""

from __future__ import annotations

from matplotlib.figure import Figure

from grokscope.report.early_warning import WarningView
from grokscope.report.plots import _figure

__all__ = ["warning_curves"]


def warning_curves(views: list[WarningView], max_panels: int = 12) -> Figure:
    """One panel per run with scores (at most `max_panels`): the score (blue) and its threshold (grey dashed), the
    warning (red dashed), the predicted window (red band, its centre red dotted) and the grok step (black dotted)."""
    shown = [v for v in views if v.scores is not None][:max_panels]
    fig, axes = _figure(len(shown))
    for ax, v in zip(axes, shown, strict=True):
        ax.plot(v.steps, v.scores, "C0.-", lw=1, ms=3, label=f"{v.detector} score")
        ax.axhline(v.threshold, color="0.4", ls="--", lw=1, label=f"threshold {v.threshold:.3g}")
        right = [float(v.steps.max())] if len(v.steps) else []
        w = v.warning
        if w is not None:
            ax.axvline(w["step"], color="r", ls="--", lw=1, label=f"warning {w['step']}")
            if w.get("window_lo") is not None and w.get("window_hi") is not None:
                ax.axvspan(w["window_lo"], w["window_hi"], color="r", alpha=0.12,
                           label=f"predicted {w['window_lo']:.0f}–{w['window_hi']:.0f}")
                right.append(w["window_hi"])
            if w.get("predicted_grok") is not None:
                ax.axvline(w["predicted_grok"], color="r", ls=":", lw=1)
        if v.grok_step is not None:
            ax.axvline(v.grok_step, color="k", ls=":", lw=1.2, label=f"grok {v.grok_step}")
            right.append(v.grok_step)
        if right:
            ax.set_xlim(0, 1.03 * max(right))
        ax.set_title(v.run if w is not None else f"{v.run} (no warning)", fontsize=8)
        ax.set_xlabel("step")
        ax.set_ylabel("detector score")
        ax.legend(fontsize=6, loc="best")
    return fig
