"""The `grokscope run` arguments the CLI tests share: a model that trains in a second on 2 CPU cores."""

from __future__ import annotations

TINY_MODEL = {"p": 11, "d_model": 32, "heads": 2}


def tiny_args(**options: int | bool | None) -> list[str]:
    """`--p 11 --d-model 32 --heads 2` and `options`, each `name=value` as `--name value` (underscores as
    dashes; True: the bare flag; None or False: left out, a TINY_MODEL entry included)."""
    args: list[str] = []
    for name, value in {**TINY_MODEL, **options}.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is not None and value is not False:
            args += [flag, str(value)]
    return args


# a 100-step run with no inline defects and no geometry summary: what most CLI tests train
TINY = tiny_args(steps=100, eval_every=50, checkpoint_every=50, defect_every=0, no_geometry=True)
