"""Output written atomically per chunk, with a journal, so an interrupted run resumes exactly.

While a run is going, ``OUTPUT`` does not exist yet; these do::

    OUTPUT.partial                 the output so far (header + committed chunks)
    OUTPUT.errors.jsonl.partial    the error report so far: {"file", "record_id", "line", "reason"}
    OUTPUT.deleted.jsonl.partial   PubMed DeleteCitation PMIDs so far: {"file", "record_id"}
    OUTPUT.journal                 JSON: run fingerprint, committed byte size of each file, run state

A chunk is committed by appending its bytes to the three files, fsync-ing them, and then replacing
the journal atomically (write a temporary file, fsync, ``os.replace``). The journal is the commit
point: a run killed anywhere resumes by truncating the files back to the sizes the journal names
and skipping the input records it has counted, so nothing is written twice or lost. At the end the
footer is written, the files are renamed to ``OUTPUT``, ``OUTPUT.errors.jsonl`` and
``OUTPUT.deleted.jsonl`` (the side files only when not empty), the journal becomes
``OUTPUT.summary.json``, and a later ``--resume`` finds the run complete.

These files (:func:`run_files`, with ``OUTPUT.lock``) are all a run touches; which of them may be
written, and the lock that keeps a second run off them, are :mod:`bioprune.io.output_target`'s.
Each rename checks again that it replaces a regular file (or nothing).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

from bioprune.errors import InputError

logger = logging.getLogger(__name__)
JOURNAL_VERSION = 1
_SIDES = ("errors", "deleted")


def side_path(output: Path, side: str) -> Path:
    """``OUTPUT.errors.jsonl`` or ``OUTPUT.deleted.jsonl``."""
    return output.with_name(f"{output.name}.{side}.jsonl")


def summary_path(output: Path) -> Path:
    return output.with_name(f"{output.name}.summary.json")


def journal_path(output: Path) -> Path:
    return output.with_name(f"{output.name}.journal")


def lock_path(output: Path) -> Path:
    """``OUTPUT.lock``: held by the run writing ``output`` (:mod:`bioprune.io.output_target`)."""
    return output.with_name(f"{output.name}.lock")


def _partial(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


def _tmp(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def run_files(output: Path) -> list[Path]:
    """Every path a run on ``output`` writes, renames or deletes: the output and its side files,
    their ``.partial`` files, the journal and the summary (and their ``.tmp``), and the lock."""
    finals = [output, *(side_path(output, s) for s in _SIDES)]
    return [*finals, *map(_partial, finals), journal_path(output), _tmp(journal_path(output)),
            summary_path(output), _tmp(summary_path(output)), lock_path(output)]


def interrupted_error(output: Path) -> InputError:
    """The refusal to start over on top of an interrupted run (whose journal is still there)."""
    return InputError(str(journal_path(output)), "an interrupted run left this journal: pass --resume to "
                      f"continue it, or delete it and {_partial(output).name} to start over")


def _replace(source: Path, target: Path) -> None:
    """``os.replace`` onto a regular file or a new path only (never a device, FIFO or symlink)."""
    from bioprune.io.output_target import replace_problem

    if (problem := replace_problem(target)) is not None:
        raise InputError(str(target), problem)
    os.replace(source, target)


def _write_synced(path: Path, data: bytes, mode: str) -> None:
    """Write (``"wb"``) or append (``"ab"``) ``data`` and fsync it."""
    with open(path, mode) as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _write_atomic(path: Path, text: str) -> None:
    _write_synced(_tmp(path), text.encode("utf-8"), "wb")
    _replace(_tmp(path), path)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # best effort: not every file system can
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def completed_state(output: str | Path, fingerprint: dict) -> dict | None:
    """The final state of a finished run of the same job on ``output``, or None."""
    output = Path(output)
    summary = summary_path(output)
    if not (output.is_file() and summary.is_file()):
        return None
    try:
        saved = json.loads(summary.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if saved.get("fingerprint") != _normalised(fingerprint) or journal_path(output).exists():
        return None
    return saved.get("state")


def _normalised(fingerprint: dict) -> dict:
    return json.loads(json.dumps(fingerprint, sort_keys=True))


class CheckpointedOutput:
    """The files of one run on ``output``; see the module docstring.

    Args:
        output: the final output path.
        fingerprint: what makes two runs the same job (inputs, formats, model, settings); a resume
            with another fingerprint is refused.
        resume: continue the interrupted run the journal describes (start fresh if there is none).
        header: the output format's header, written once at the start.
    """

    def __init__(self, output: str | Path, fingerprint: dict, resume: bool, header: str = ""):
        self.output = Path(output)
        self.fingerprint = _normalised(fingerprint)
        self.paths = {"output": _partial(self.output), **{s: _partial(side_path(self.output, s)) for s in _SIDES}}
        self.journal = journal_path(self.output)
        self.state: dict = {}
        self.done = False  # True when the resumed run had already written everything
        if self.journal.exists():
            if not resume:
                raise interrupted_error(self.output)
            self._reopen()
        else:
            self._start(header)

    def _start(self, header: str) -> None:
        self.output.parent.mkdir(parents=True, exist_ok=True)  # an older OUTPUT stays until replaced
        self.sizes = {}
        for key, path in self.paths.items():
            data = header.encode("utf-8") if key == "output" else b""
            _write_synced(path, data, "wb")
            self.sizes[key] = len(data)
        self._write_journal()

    def _reopen(self) -> None:
        try:
            saved = json.loads(self.journal.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise InputError(str(self.journal), f"unreadable journal ({err}); delete it to start over") from None
        if saved.get("version") != JOURNAL_VERSION:
            raise InputError(str(self.journal), f"journal version {saved.get('version')} is not "
                             f"{JOURNAL_VERSION}; delete it to start over")
        if saved.get("fingerprint") != self.fingerprint:
            old, new = saved.get("fingerprint") or {}, self.fingerprint
            diff = "; ".join(f"{k} was {old.get(k)!r}, now {new.get(k)!r}" for k in sorted(old | new) if old.get(k) != new.get(k))
            raise InputError(str(self.journal), f"cannot resume another job ({diff}); rerun with the same "
                             "inputs and options, or delete the journal to start over")
        self.sizes = saved["sizes"]
        self.state = saved["state"]
        if saved.get("finishing"):  # killed while moving files into place: finish that
            self._move_into_place()
            self.done = True
            return
        for key, path in self.paths.items():
            if not path.is_file() or path.stat().st_size < self.sizes[key]:
                raise InputError(str(path), "shorter than the journal says (lost or modified); delete "
                                 f"{self.journal.name} to start over")
            with open(path, "r+b") as handle:  # drop a chunk written after the last commit
                handle.truncate(self.sizes[key])
        logger.info("resuming %s: %s", self.output, self.state)

    def _write_journal(self, finishing: bool = False) -> None:
        _write_atomic(self.journal, json.dumps({"version": JOURNAL_VERSION, "fingerprint": self.fingerprint,
                                                "sizes": self.sizes, "state": self.state,
                                                "finishing": finishing}, sort_keys=True))

    def commit(self, texts: dict[str, str], state: dict, finishing: bool = False) -> None:
        """Append one chunk (``texts`` keyed "output", "errors", "deleted") and record ``state``."""
        for key, path in self.paths.items():
            if data := texts.get(key, "").encode("utf-8"):
                _write_synced(path, data, "ab")
                self.sizes[key] += len(data)
        self.state = state
        self._write_journal(finishing)

    def finish(self, footer: str, state: dict) -> None:
        """Write the footer and move everything into place; the journal becomes the summary."""
        self.commit({"output": footer}, state, finishing=True)
        self._move_into_place()
        self.done = True

    def _move_into_place(self) -> None:
        for side in _SIDES:
            partial, final = self.paths[side], side_path(self.output, side)
            if self.sizes[side] and partial.exists():
                _replace(partial, final)
            elif not self.sizes[side]:  # nothing to report: no file (nor an older run's)
                partial.unlink(missing_ok=True)
                final.unlink(missing_ok=True)
        if self.paths["output"].exists():
            _replace(self.paths["output"], self.output)
        _write_atomic(summary_path(self.output), json.dumps(
            {"version": JOURNAL_VERSION, "fingerprint": self.fingerprint, "state": self.state}, indent=2,
            sort_keys=True) + "\n")
        self.journal.unlink()
        _fsync_dir(self.output.parent)
