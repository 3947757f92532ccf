"""Checks made before a model is loaded: the device it goes to and the directory it comes from.

Each failure is one line, an :class:`~bioprune.errors.InputError` (a ValueError) whose source is
the device or the directory, naming what is wrong and the fix, raised before torch or
transformers get the chance to answer with a traceback (``--device cuda`` on a CPU-only torch) or,
worse, with no error at all (transformers 5 builds an empty tokenizer for a directory without
tokenizer files, and every word becomes [UNK]). The CLI, the engine and the spaCy component
call the same functions, so the rules live here once.

    resolve_device("cuda:1")        # "cuda:1" if this torch sees a second GPU, else ValueError
    check_model_dir("runs/minilm")  # ValueError if config, weights or tokenizer files are missing
"""
from __future__ import annotations

from pathlib import Path

import torch

from bioprune.errors import InputError

DEVICE_TYPES = ("cpu", "cuda", "mps")  # what the engine has been run on; "cuda:N" picks a GPU
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")  # safetensors only (load_model)
# The files a fast BERT-family tokenizer is built from: tokenizer.json, or the slow vocabularies
# transformers converts (WordPiece vocab.txt, BPE vocab.json + merges.txt, SentencePiece models).
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")


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


def check_model_dir(path: str | Path) -> None:
    """Raise InputError (a ValueError) naming ``path`` and the missing files when it cannot be a model directory.

    A model directory holds the model config (config.json), its weights as safetensors and its
    tokenizer; exit heads and the controller are optional (needed only for pruning). A path that is
    not a local directory is left to transformers (a hub id).
    """
    path = Path(path)
    if not path.is_dir():
        return
    missing = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    if not any((path / f).is_file() for f in WEIGHT_FILES):
        missing.append("weights (model.safetensors)")
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        missing.append("tokenizer (tokenizer.json or vocab.txt)")
    if missing:
        raise InputError(str(path), f"not a complete model directory, no {', no '.join(missing)}; save the "
                         "model and its tokenizer there with save_pretrained")
