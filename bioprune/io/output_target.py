"""Where a batch run may write: the output path's checks and its lock, in one place.

    with claim_output("out.pubtator", inputs=["in.xml.gz"]):   # InputError when refused
        ...                                                    # the run, holding OUT.lock

Every run on an output path goes through :func:`claim_output` (``annotate_files``, hence the CLI
and each Ray actor's per-file outputs); :func:`check_output` is the same check without the lock,
for failing fast before a model is loaded. A refused run writes nothing. The rules:

- **Standard output** is ``-`` or ``/dev/stdout`` (:func:`is_stdout`): a stream, never a path.
- **Never onto an input.** A run writes, renames or deletes only the files :func:`run_files`
  lists (``OUT``, ``OUT.errors.jsonl``, ``OUT.deleted.jsonl``, their ``.partial``, the journal and
  summary with their ``.tmp``, ``OUT.lock``). None may be an input file: the same path once
  symlinks are resolved, or the same inode (a hard link). Otherwise ``--output same.pubtator``
  would replace its own input with the annotations, and the gold mentions in it would be gone.
- **Only regular files are replaced.** The output is put in place by renaming a finished file, so
  a device (``/dev/null``), a FIFO, a directory or a symlink at any of those paths would itself be
  replaced by a regular file (run as root, ``--output /dev/full`` turned the device into a file).
  Such a path is refused; a path that does not exist yet is fine.
- **One run per output.** ``OUT.lock`` is held with ``flock(LOCK_EX | LOCK_NB)`` for the whole run
  and holds the PID of its holder: a second run on the same output (``--resume`` included) is
  refused, naming that PID, instead of interleaving with the first and losing documents. The
  kernel drops a lock when its process dies, so a killed run never leaves a stale lock behind; the
  file itself is removed when the run ends.
"""
from __future__ import annotations

import fcntl
import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from bioprune.errors import InputError
from bioprune.io.checkpoint import interrupted_error, journal_path, lock_path, run_files

logger = logging.getLogger(__name__)
STDOUT_NAMES = ("-", "/dev/stdout")  # what --output means by standard output


def is_stdout(output: str | Path | None) -> bool:
    """True when ``output`` names standard output (``-`` or ``/dev/stdout``)."""
    return output is not None and str(output) in STDOUT_NAMES


_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFLNK: "a symbolic link", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFIFO: "a named pipe (FIFO)", stat.S_IFSOCK: "a socket"}


def replace_problem(path: Path) -> str | None:
    """Why a run may not replace ``path`` by renaming a file onto it (None: it may; only a regular
    file or a path that does not exist may be replaced, see the module docstring)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISREG(mode):
        return None
    kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
    if kind == "a directory":
        return "is a directory, not a file (an output directory is for --ray)"
    if kind == "a symbolic link":
        return (f"is a symbolic link (to {os.readlink(path)}): the output is renamed into place, which would "
                "replace the link rather than write through it; give the real path")
    return (f"is {kind}, not a regular file: the output is renamed into place, which would replace it with a "
            "file; write to a regular file, or to '-' (or /dev/stdout) for standard output")


def _identities(inputs: Iterable[str | Path]) -> tuple[dict[Path, str], dict[tuple[int, int], str]]:
    """Each input by resolved path and by (device, inode), mapping to the name it was given as."""
    by_path, by_inode = {}, {}
    for name in inputs:
        path = Path(name)
        by_path[path.resolve()] = str(name)
        try:
            st = path.stat()
        except OSError:
            continue
        by_inode[(st.st_dev, st.st_ino)] = str(name)
    return by_path, by_inode


def _input_clash(path: Path, by_path: dict[Path, str], by_inode: dict[tuple[int, int], str]) -> str | None:
    """The input that ``path`` is (same resolved path or same inode), or None."""
    if path.resolve() in by_path:
        return by_path[path.resolve()]
    try:
        st = path.stat()
    except OSError:
        return None
    return by_inode.get((st.st_dev, st.st_ino))


def check_paths(output: str | Path, inputs: Iterable[str | Path] = ()) -> None:
    """InputError when a run on ``output`` would write onto an input or replace a non-regular file.

    Looks at every file the run writes (:func:`run_files`), not only ``output``; writes nothing.
    """
    by_path, by_inode = _identities(inputs)
    for path in run_files(Path(output)):
        if (clash := _input_clash(path, by_path, by_inode)) is not None:
            what = "is" if path == Path(output) else f"would write {path.name}, which is"
            raise InputError(str(output), f"{what} the input file {clash}: annotating it onto itself would destroy "
                             "it; choose another --output")
        if (problem := replace_problem(path)) is not None:
            raise InputError(str(path), problem)


def lock_holder(output: str | Path) -> str | None:
    """Who holds ``output``'s lock ("PID 1234"), or None when no live run does; writes nothing."""
    path = lock_path(Path(output))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder(fd)
    finally:
        os.close(fd)  # also releases the lock, when this probe got it
    return None


def _holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
    except OSError:
        pid = ""
    return f"PID {pid}" if pid.isdigit() else "PID unknown"


def _busy(output: Path, holder: str) -> InputError:
    return InputError(str(output), f"another bioprune run is writing this output ({holder}, lock "
                      f"{lock_path(output).name}): wait for it to finish or stop it; a killed run's lock "
                      "is released by itself")


def check_output(output: str | Path, inputs: Iterable[str | Path] = (), resume: bool = False) -> None:
    """Everything :func:`claim_output` would refuse, and an interrupted run without ``resume``,
    checked without taking the lock or writing anything (the CLI's check before loading a model)."""
    output = Path(output)
    check_paths(output, inputs)
    if (holder := lock_holder(output)) is not None:
        raise _busy(output, holder)
    if journal_path(output).exists() and not resume:
        raise interrupted_error(output)


class OutputLock:
    """``OUT.lock`` held with ``flock`` (see the module docstring); a context manager."""

    def __init__(self, output: str | Path):
        self.output = Path(output)
        self.path = lock_path(self.output)
        self._fd: int | None = None

    def acquire(self) -> "OutputLock":
        """Take the lock, or raise InputError naming the PID that holds it."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise _busy(self.output, holder) from None
            if self._still_linked(fd):  # not removed by a holder that finished while we opened it
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd
        logger.debug("locked %s", self.path)
        return self

    def _still_linked(self, fd: int) -> bool:
        try:
            on_disk = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)

    def release(self) -> None:
        """Remove the lock file (while still holding it, so no one locks the old file) and unlock."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "OutputLock":
        return self if self._fd is not None else self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def claim_output(output: str | Path, inputs: Iterable[str | Path] = ()) -> OutputLock:
    """Check ``output`` against ``inputs`` (:func:`check_paths`) and take its lock; use as a context.

    Creates the output's directory only once the checks have passed (the lock file lives there).
    """
    output = Path(output)
    inputs = list(inputs)
    check_paths(output, inputs)
    output.parent.mkdir(parents=True, exist_ok=True)
    lock = OutputLock(output).acquire()
    try:
        check_paths(output, inputs)  # again under the lock: nothing changed while we waited for it
    except BaseException:
        lock.release()
        raise
    return lock
