"""The device a model runs on, checked before it loads.

A failure is one line, an :class:`~bioprune.errors.InputError` (a ValueError) whose source is the
device, naming what is wrong and the fix, raised before torch answers with a traceback
(``--device cuda`` on a CPU-only torch). The CLI and the engine call it, so the rule lives here
once; the model folder's own check is :func:`bioprune.model_files.resolve_model_dir`.

    resolve_device("cuda:1")        # "cuda:1" if this torch sees a second GPU, else ValueError
"""
from __future__ import annotations

import torch

from bioprune.errors import InputError

DEVICE_TYPES = ("cpu", "cuda", "mps")  # what the engine has been run on; "cuda:N" picks a GPU


def resolve_device(name: str | torch.device) -> str:
    """The torch device string for ``name`` ("cpu", "cuda", "cuda:N", "mps"), checked against this torch.

    Raises InputError (a ValueError; its source is ``name``) for a string torch cannot parse, a device type the engine does not
    run on, CUDA on a torch built without it or with no GPU visible, and ``cuda:N`` beyond the GPUs.
    """
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(str(name), "not a torch device: use cpu, cuda or cuda:N") from None
    if device.type not in DEVICE_TYPES:
        raise InputError(str(name), f"bioprune runs on {', '.join(DEVICE_TYPES)}, not {device.type}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = ("this torch is built without CUDA" if torch.version.cuda is None
                   else f"this torch (CUDA {torch.version.cuda}) sees no GPU")
            raise InputError(str(name), f"{why}; use cpu (or install a CUDA build of torch on a GPU machine)")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise InputError(str(name), f"this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(str(name), "this torch has no usable MPS (Apple GPU) backend; use cpu")
    return str(device)
