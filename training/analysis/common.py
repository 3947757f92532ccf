"""Shared plumbing of the evaluation-suite scripts: data paths, JSON output, pruning arguments,
dense-and-pruned annotation of gold documents. Torch is imported only when :func:`annotate_gold` runs."""
from __future__ import annotations

import json
import logging
import math
import os
import argparse
import hashlib
import inspect
import re
import shlex
import sys
import types
import typing
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, asdict, fields
from pathlib import Path

from bioprune.config import OPERATING_POINTS, PruningConfig
from bioprune.model_files import default_file_mode
from bioprune.types import ENTITY_TYPES

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = ROOT.parent / "shared" / "data"  # never copied into the repository
TEST_SET = DATA_DIR / "bc5cdr" / "CDR_TestSet.PubTator.txt"
TRAINING_SETS = (DATA_DIR / "bc5cdr" / "CDR_TrainingSet.PubTator.txt",
                 DATA_DIR / "bc5cdr" / "CDR_DevelopmentSet.PubTator.txt")  # the shipped model trains on both
MEDLINE_SLICE = DATA_DIR / "pubmed" / "medline16n0902.xml.gz"

Span = tuple[int, int, str]


def json_safe(obj):
    """``obj`` with non-finite floats as strings (``"inf"``), so the JSON is strict (no ``Infinity``)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def config_dict(config: PruningConfig) -> dict:
    """A PruningConfig as strict-JSON data (``float('inf')`` trigger thresholds become ``"inf"``)."""
    return json_safe(asdict(config))


def write_json_atomic(path: str | Path, obj) -> None:
    """Write strict JSON to ``path`` through a temporary file in the same folder and a rename, so a
    run killed mid-write leaves the previous complete file, never half of one. The file gets the
    permissions a plain ``open`` would give it (mkstemp's are owner-only)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        os.fchmod(fd, default_file_mode())
        with os.fdopen(fd, "w") as handle:
            json.dump(json_safe(obj), handle, indent=2, allow_nan=False)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def add_pruning_args(parser, controller: str = "rule") -> None:
    """One flag per face setting of PruningConfig (bioprune.options: --controller --lambda
    --min-keep-ratio --prune-layers --[no-]recovery --[no-]frozen-context --precision), for a
    script that prunes: --controller is rule or mlp, default ``controller``."""
    from bioprune.options import add_config_arguments

    add_config_arguments(parser, controllers=tuple(dict.fromkeys((controller, "rule", "mlp"))))


def pruning_config(ns) -> PruningConfig:
    """The PruningConfig of :func:`add_pruning_args`' arguments (a setting the script has no flag
    for at its default), other fields at their defaults."""
    from bioprune.options import SETTINGS, config_from_values

    return config_from_values({s.key: getattr(ns, s.key) for s in SETTINGS if hasattr(ns, s.key)})


def gold_spans(docs) -> dict[str, list[Span]]:
    """Gold Chemical/Disease spans per PMID of PubTator documents."""
    return {d.pmid: [(m.start, m.end, m.type) for m in d.mentions if m.type in ENTITY_TYPES] for d in docs}


def annotate_gold(args, config: PruningConfig) -> tuple[list, list, list]:
    """(documents, dense Annotations, pruned Annotations): the first ``args.limit_docs`` (0: all)
    PubTator documents of ``args.gold``, annotated by ``args.model`` dense and with ``config`` (one
    model in memory), ``args.batch_size`` windows per pass on ``args.threads`` torch threads."""
    import torch

    from bioprune.config import DENSE
    from bioprune.engine import PruningEngine
    from bioprune.io.pubtator import read_pubtator

    torch.set_num_threads(args.threads)
    docs = read_pubtator(args.gold)[: args.limit_docs or None]
    engine = PruningEngine.from_pretrained(args.model, config=DENSE)
    documents = [d.to_document() for d in docs]
    logger.info("annotating %d documents dense", len(documents))
    dense = engine.annotate(documents, batch_size=args.batch_size)
    logger.info("annotating %d documents pruned (%s)", len(documents), config)
    return docs, dense, engine.with_config(config).annotate(documents, batch_size=args.batch_size)


def medline_halves(path: str | Path) -> tuple[list, list]:
    """The MEDLINE slice's non-blank citations (file order) as (first half, second half): settings
    are chosen and calibrated on the first, fidelity is measured on the second, held-out one."""
    from bioprune.io.pubmed_xml import iter_pubmed_xml

    docs = [d for d in iter_pubmed_xml(path) if d.text.strip()]
    return docs[: len(docs) // 2], docs[len(docs) // 2:]


def md5(path: str | Path) -> str:
    """The hex md5 of a file: the data a run trained on, recorded beside its arguments."""
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def parse_dataclass(cls, doc: str, argv: Sequence[str] | None = None, *extra, check=None):
    """``cls`` from the command line ``argv`` (None: sys.argv): a script's whole parser when its
    options are one dataclass's fields; the first paragraph of ``doc`` (its docstring) is --help's
    description. ``extra``: functions that add more options to the parser (e.g. :func:`add_pruning_args`);
    given any, ``(the cls instance, the parsed namespace)`` is returned. ``check(instance)``: a message
    for options that parse but do not go together (argparse's usage error, exit 2), or None."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    add_dataclass_arguments(parser, cls)
    for add in extra:
        add(parser)
    ns = parser.parse_args(argv)
    args = dataclass_from_args(cls, vars(ns))
    if check is not None and (problem := check(args)):
        parser.error(problem)
    return (args, ns) if extra else args


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls) -> None:
    """One option per field of the dataclass ``cls``: ``--field-name``, its default and type from the
    field, its help from ``field(metadata={"help": ...})`` or the comment after the field, so a
    script's options are its config's fields, declared once (as simple-parsing does). A bool is
    ``--x/--no-x``; a ``Literal`` gives choices; ``tuple[T, ...]`` takes several values (``+`` when it
    must not be empty; given twice, the values add up), ``tuple[T, T]`` exactly two, ``tuple[tuple[T, ...], ...]`` a repeated option
    (one tuple each time); a field without a default is required. ``metadata={"metavar": ...}``: the
    values stay strings, for the script to parse."""
    hints = typing.get_type_hints(cls)
    comments = _field_comments(cls)
    for f in fields(cls):
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        hint = _without_none(hints[f.name])
        kwargs = {"dest": f.name, "help": f.metadata.get("help", comments.get(f.name))}
        if default is MISSING:
            kwargs["required"] = True
        else:
            kwargs["default"] = _as_list(default)
        if hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(hint) is tuple:
            args = typing.get_args(hint)
            if typing.get_origin(args[0]) is tuple and "metavar" not in f.metadata:  # repeated option, one tuple each time
                kwargs.update(action="append", nargs="+", default=None)  # None: the field's default (argparse appends to a default)
                args = typing.get_args(args[0])
            kwargs.setdefault("nargs", ("+" if default is MISSING or default else "*") if args[-1] is Ellipsis else len(args))
            if args[-1] is Ellipsis and "action" not in kwargs:  # given twice, the values add up (the last would win alone)
                kwargs.update(action="extend", default=None)  # None: the field's default (argparse extends a default)
            kwargs.update(_scalar(args[0], f))
        else:
            kwargs.update(_scalar(hint, f))
        parser.add_argument("--" + f.name.replace("_", "-"), **kwargs)


def dataclass_from_args(cls, values: Mapping[str, object]):
    """``cls`` from :func:`add_dataclass_arguments`' parsed values (lists back to tuples; None, a
    repeated option never given, leaves the field's default)."""
    return cls(**{f.name: _as_tuple(values[f.name]) for f in fields(cls) if values[f.name] is not None})


def _as_list(value):
    return [_as_list(v) for v in value] if isinstance(value, tuple) else value


def _as_tuple(value):
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list) else value


def _without_none(hint):
    """``T`` of ``T | None``."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1 else hint


def _scalar(hint, f) -> dict:
    """argparse's ``type`` (and ``choices``, ``metavar``) for values of type ``hint`` of field ``f``."""
    if "metavar" in f.metadata:
        return {"type": str, "metavar": f.metadata["metavar"]}
    if typing.get_origin(hint) is typing.Literal:
        return {"type": type(typing.get_args(hint)[0]), "choices": list(typing.get_args(hint))}
    return {"type": hint if hint in (int, float) else str}


def _field_comments(cls) -> dict[str, str]:
    """The comment after each field of ``cls``'s source (``name: type = default  # help``)."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    found = {}
    for line in source.splitlines():
        match = re.match(r"\s+(\w+)\s*:[^#]*#\s*(.+)$", line)
        if match:
            found[match[1]] = match[2].strip().replace("%", "%%")
    return found


def command_line(script: str, argv: Sequence[str] | None = None) -> str:
    """How a script was run, for the results file (paths as given): ``python -m training.NAME ARGS``
    for ``script`` "-m training.NAME" (the scripts run as modules from the repository root) and
    ``argv`` (None: the process's own arguments)."""
    return " ".join(["python", script, shlex.join(sys.argv[1:] if argv is None else argv)]).rstrip()


def at_operating_point(config: Mapping) -> bool:
    """Whether a results row's ``config`` (a PruningConfig as JSON) is its controller's operating
    point *today* (:data:`bioprune.config.OPERATING_POINTS`: λ, pruning layers, frozen context):
    a row's own ``is_default`` says what the default was when it ran, which a later choice can change."""
    point = OPERATING_POINTS.get(config.get("controller"))
    return (point is not None and config.get("controller") != "none"
            and float(config.get("aggressiveness", -1)) == point.aggressiveness
            and tuple(config.get("prune_layers") or ()) == point.prune_layers
            and bool(config.get("frozen_context", False)) == point.frozen_context)
