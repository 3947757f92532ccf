"""Where a model's files are: a local directory, or a Hugging Face Hub repository fetched to one.

Everything bioprune reads for a model — weights, tokenizer, exit heads, controller,
``postprocess.json``, model card — lives in one folder. :func:`resolve_model_dir` turns what a user
names (a directory, or a hub id such as ``"org/bc5cdr-minilm"``) into that folder, downloading the
whole repository (safetensors, JSON and tokenizer files only; never pickled ``.bin``/``.pt``
weights) with ``huggingface_hub.snapshot_download``, so a hub model prunes exactly like a local one.
``PruningEngine.from_pretrained`` and the spaCy component both call it. :func:`copy_model_files`
is the other half: writing a model folder somewhere else, as shipped.

    resolve_model_dir("runs/final-minilm")        # Path("runs/final-minilm")
    resolve_model_dir("org/bc5cdr-minilm")        # ~/.cache/huggingface/hub/models--org--bc5cdr-minilm/snapshots/<sha>
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from safetensors.torch import save_file

logger = logging.getLogger(__name__)

# What a model folder may hold that bioprune reads or carries along: config and reports (JSON),
# weights, exit heads and controller (safetensors), tokenizer vocabularies, the model card.
HUB_FILE_PATTERNS = ("*.json", "*.safetensors", "*.txt", "*.model", "README.md")
SKIPPED_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")  # pickled weights: bioprune never reads (nor copies) them
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")  # safetensors only (engine.load_model)
# The files a fast BERT-family tokenizer is built from: tokenizer.json, or the slow vocabularies
# transformers converts (WordPiece vocab.txt, BPE vocab.json + merges.txt, SentencePiece models).
# Without any, transformers 5 silently builds an empty tokenizer and every word becomes [UNK].
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")


def default_file_mode() -> int:
    """The permission bits a new file gets under this process's umask (0o644 under the usual 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def share_like_new_files(folder: Path, names=WEIGHT_FILES) -> None:
    """Give the files ``names`` in ``folder`` (those there) the umask's permissions.

    safetensors >= 0.7 writes every file owner-only (0600) whatever the umask, for transformers'
    ``save_pretrained`` too: a model folder saved on a shared machine could not be loaded by
    anyone else, and a container running as another user could not read weights copied into it.
    """
    for name in names:
        if (folder / name).is_file():
            (folder / name).chmod(default_file_mode())


def save_tensors(tensors: dict, path: Path, metadata: dict[str, str] | None = None) -> Path:
    """``safetensors.torch.save_file``, readable like any new file (:func:`share_like_new_files`)."""
    save_file(tensors, str(path), metadata=metadata)
    share_like_new_files(path.parent, (path.name,))
    return path


class ModelNotFoundError(FileNotFoundError):
    """The named model is neither a local model directory nor a reachable Hub repository (one line)."""

    def __init__(self, name: str | Path, reason: str):
        self.name = str(name)
        self.reason = reason  # what is wrong and the fix, without the name
        super().__init__(f"{name}: {reason}")


def resolve_model_dir(name: str | Path) -> Path:
    """The local folder holding the model ``name`` names: a directory, or a Hub repository's snapshot.

    A directory is used as it is (it must hold ``config.json``). Anything else that is a valid hub
    id is fetched with ``snapshot_download`` (from the local cache when offline or already there).
    Raises :class:`ModelNotFoundError` with one line naming ``name``, what is wrong and the fix.
    """
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(name, "a directory but not a model directory (no config.json); pass the "
                                     "folder written by save_pretrained or training/")
        _check_complete(name, path)
        return path
    if path.exists():
        raise ModelNotFoundError(name, "a file, not a model directory; pass the folder that holds config.json")
    if not _is_hub_id(str(name)):
        raise ModelNotFoundError(name, "no such model directory; pass a folder written by save_pretrained or "
                                 "training/, or a Hugging Face Hub id such as 'org/model'")
    return _snapshot(str(name))


def _check_complete(name: str | Path, folder: Path) -> None:
    """ModelNotFoundError naming what a model folder with config.json still lacks: safetensors weights
    or tokenizer files (exit heads and the controller are optional: only pruning needs them)."""
    missing = [what for what, files in (("weights (model.safetensors)", WEIGHT_FILES),
                                        ("tokenizer (tokenizer.json or vocab.txt)", TOKENIZER_FILES))
               if not any((folder / f).is_file() for f in files)]
    if missing:
        raise ModelNotFoundError(name, f"not a complete model directory, no {', no '.join(missing)}; save the "
                                 "model and its tokenizer there with save_pretrained")


def _is_hub_id(name: str) -> bool:
    """Whether ``name`` could name a Hub repository ("org/name" or a legacy "name")."""
    try:
        from huggingface_hub.utils import validate_repo_id

        validate_repo_id(name)
    except (ImportError, ValueError):  # no huggingface_hub (only local directories), or HFValidationError
        return False
    return True


def _snapshot(repo_id: str) -> Path:
    """The repository's files in the local Hub cache, downloaded first when the Hub can be reached."""
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo_id, allow_patterns=list(HUB_FILE_PATTERNS)))
    except OSError as e:  # every hub failure is an OSError: not found, gated, offline, unreachable, incomplete
        raise ModelNotFoundError(repo_id, f"no such model directory, and not a model on the Hugging Face Hub "
                                 f"({_hub_failure(e)}); pass a local model folder, or a Hub id you can "
                                 "reach") from e
    if not (folder / "config.json").is_file():
        raise ModelNotFoundError(repo_id, "the Hub repository has no config.json; it is not a bioprune "
                                 "model (one written by save_pretrained or push_to_hub)")
    _check_complete(repo_id, folder)
    logger.info("resolved hub model %s to %s", repo_id, folder)
    return folder


def _hub_failure(error: OSError) -> str:
    """Why ``snapshot_download`` failed, in a few words."""
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    if isinstance(error, RepositoryNotFoundError):
        return "no such repository, or it is private or gated and no token gave access"
    if isinstance(error, LocalEntryNotFoundError) and constants.HF_HUB_OFFLINE:
        return f"HF_HUB_OFFLINE is set and it is not in the local Hub cache {constants.HF_HUB_CACHE}"
    if isinstance(error, LocalEntryNotFoundError):
        return f"the Hub could not be reached and it is not in the local Hub cache {constants.HF_HUB_CACHE}"
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'no detail'}"


def copy_model_files(source: Path, target: Path) -> None:
    """Copy a model folder's files into ``target`` exactly as they are (fp16 weights stay fp16).

    Pickled weights (``SKIPPED_SUFFIXES``) are left behind: bioprune loads safetensors only.
    Nothing happens when ``source`` and ``target`` are the same folder.
    """
    target.mkdir(parents=True, exist_ok=True)
    if source.resolve() == target.resolve():
        return
    for file in sorted(source.iterdir()):
        if file.is_file() and file.suffix not in SKIPPED_SUFFIXES:
            shutil.copy2(file, target / file.name)


def copy_linker_index(index_dir: Path, target: Path) -> None:
    """Copy a linker index folder (``bioprune.linking``) into ``target/linker`` unless it is there
    already: the IDs a saved model gives then do not depend on the installed package's index."""
    if index_dir.is_dir() and not (target / "linker").exists():
        shutil.copytree(index_dir, target / "linker")
