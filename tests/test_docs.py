"""Every ```python block of README.md and docs/*.md runs, and every ```bash block of the README,
so the documentation cannot rot. The ```bash blocks of docs/ (training and cluster recipes that need
../shared/data, hours or a network) are parsed instead: bash expands each, and every
``python -m training.*`` and ``bioprune`` command in it must get past its argument parser.

One test per block, named ``FILE:LINE`` (the line of its opening fence). A block runs on its own,
in a fresh namespace, from the repository root, offline (conftest sets HF_HUB_OFFLINE): a block
that needs another's names defines them itself, as a reader who copies it would. Two HTML
comments on the line before a fence, each with its reason, are the only ways out:

    <!-- requires: en_core_sci_sm -->      skipped unless these modules import (an optional model)
    <!-- no-run: needs ../shared/data -->  never run (data or a network the tests do not have)

Keep them rare: rewrite a block so it runs before marking it.
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w+-]*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*(?P<kind>no-run|requires):\s*(?P<text>.+?)\s*-->\s*$")


@dataclass(frozen=True)
class CodeBlock:
    path: Path
    line: int  # 1-based line of the opening fence
    code: str
    marker: tuple[str, str] | None  # ("no-run" | "requires", its text) from the line before the fence

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def python_blocks(path: Path, lang: str = "python") -> list[CodeBlock]:
    """The ```python (or ``lang``) blocks of a Markdown file, dedented by their fence's indentation."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence or not fence["lang"]:
            i += 1
            continue
        start, indent = i, len(fence["indent"])
        i += 1
        while i < len(lines) and not (FENCE.match(lines[i]) and not FENCE.match(lines[i])["lang"]):
            i += 1
        if fence["lang"] == lang:
            previous = next((line for line in reversed(lines[:start]) if line.strip()), "")
            marker = MARKER.match(previous)
            code = "\n".join(line[indent:] for line in lines[start + 1:i])
            blocks.append(CodeBlock(path, start + 1, code, (marker["kind"], marker["text"]) if marker else None))
        i += 1
    return blocks


BLOCKS = [block for path in DOC_FILES for block in python_blocks(path)]
# the README's shell quick starts (docs/ hold training and cluster recipes that need ../shared/data)
COMMANDS = python_blocks(ROOT / "README.md", "bash")
RECIPES = [block for path in DOC_FILES[1:] for block in python_blocks(path, "bash")]


def test_the_extractor_finds_the_readme_examples():
    """The README keeps its quick starts (Python and spaCy); the longer examples live in docs/."""
    names = [b.name for b in BLOCKS]
    assert sum(n.startswith("README.md:") for n in names) >= 3, names
    assert sum(n.startswith("docs/") for n in names) >= 4, names
    assert len(set(names)) == len(names)


def test_the_readme_reads_in_five_minutes():
    """Issue 19: at most 250 lines (front matter and generated tables included); the research report
    lives in docs/."""
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 250


def test_extractor_on_a_hand_made_file(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("text\n```python\na = 1\n```\n\n<!-- no-run: needs a GPU -->\n\n```python\nb = 2\n```\n"
                   "```bash\nls\n```\n1. step\n   ```python\n   c = 3\n   ```\n", encoding="utf-8")
    blocks = python_blocks(doc)
    assert [(b.line, b.code, b.marker) for b in blocks] == [
        (2, "a = 1", None), (8, "b = 2", ("no-run", "needs a GPU")), (15, "c = 3", None)]


def test_markers_are_rare_and_say_why():
    marked = [b for b in BLOCKS if b.marker]
    assert len(marked) <= 2, [b.name for b in marked]
    assert all(len(b.marker[1]) >= 8 for b in marked)


@pytest.mark.parametrize("block", BLOCKS, ids=[b.name for b in BLOCKS])
def test_doc_block_runs(block: CodeBlock, monkeypatch):
    if block.marker and block.marker[0] == "no-run":
        pytest.skip(f"{block.name}: no-run: {block.marker[1]}")
    if block.marker and block.marker[0] == "requires":
        missing = [m for m in block.marker[1].split() if importlib.util.find_spec(m) is None]
        if missing:
            pytest.skip(f"{block.name} needs {', '.join(missing)}")
    monkeypatch.chdir(ROOT)
    exec(compile(block.code, block.name, "exec"), {"__name__": "__doc_block__"})


def test_the_readme_commands_that_run_here_are_most_of_them():
    runnable = [b for b in COMMANDS if not b.marker]
    assert len(runnable) >= 2 and len(COMMANDS) - len(runnable) <= 3, [b.name for b in COMMANDS]
    assert all(len(b.marker[1]) >= 8 for b in COMMANDS if b.marker)


@pytest.mark.parametrize("block", COMMANDS, ids=[b.name for b in COMMANDS])
def test_readme_command_runs(block: CodeBlock):
    """A README shell block, line by line (backslash continuations joined), from the repository root,
    offline: each command exits 0."""
    if block.marker:
        pytest.skip(f"{block.name}: {block.marker[0]}: {block.marker[1]}")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    for command in block.code.replace("\\\n", " ").splitlines():
        command = command.split(" #")[0].strip()
        if not command or command.startswith("#"):
            continue
        done = subprocess.run(command, shell=True, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{block.name}: {command}\n{done.stderr[-2000:]}"


# bash stand-ins: the commands a recipe names are recorded (fields split by \x1f, commands by \x1e),
# everything else is a no-op, so nothing is installed, downloaded or written
_RECORD = """
python() { printf '%s\\x1f' python "$@"; printf '\\x1e'; }
bioprune() { printf '%s\\x1f' bioprune "$@"; printf '\\x1e'; }
pip() { :; }; wget() { :; }; unzip() { :; }; gzip() { cat > /dev/null; }
"""


class _Parsed(Exception):
    """Raised by the stand-in ``parse_args`` once the real one has accepted the arguments."""


def recipe_commands(block: CodeBlock, cwd: Path) -> list[list[str]]:
    """The ``python -m training.*`` and ``bioprune`` commands of a recipe, as bash expands them."""
    done = subprocess.run(["bash", "-c", _RECORD + block.code], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{block.name}: bash: {done.stderr[-1000:]}"
    commands = [c.split("\x1f")[:-1] for c in done.stdout.split("\x1e") if c]
    return [c for c in commands if c[0] == "bioprune" or c[1:3] and c[1] == "-m" and c[2].startswith("training.")]


def test_the_recipes_name_commands():
    assert len(RECIPES) >= 8 and sum(len(recipe_commands(b, ROOT)) for b in RECIPES) >= 20


def assert_parses(commands: list[list[str]], where: str, monkeypatch, capsys) -> None:
    """Each ``python -m training.*`` / ``bioprune`` command (argv lists) gets past its argument
    parser: the real ``parse_args`` runs, then a stand-in stops the script before it does anything."""
    import argparse
    import runpy
    import sys

    real = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        real(self, args, namespace)
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    for command in commands:
        module, args = ("bioprune.cli", command[1:]) if command[0] == "bioprune" else (command[2], command[3:])
        spec = importlib.util.find_spec(module)
        assert spec is not None, f"{where}: no module {module}"
        source = Path(spec.origin).read_text(encoding="utf-8")
        if "ArgumentParser" not in source and "parse_dataclass(" not in source:  # takes no arguments: not run
            assert not args, f"{where}: {module} takes no arguments, the command gives {args}"
            continue
        monkeypatch.setattr(sys, "argv", [module, *args])
        with pytest.raises(_Parsed):
            try:
                runpy.run_module(module, run_name="__main__", alter_sys=True)  # as python -m: the script is __main__
            except SystemExit as exit_:
                pytest.fail(f"{where}: {' '.join(command)}: exit {exit_.code}: {capsys.readouterr().err[-500:]}")


@pytest.mark.parametrize("block", RECIPES, ids=[b.name for b in RECIPES])
def test_recipe_commands_parse(block: CodeBlock, tmp_path, monkeypatch, capsys):
    """Every command of a docs/ recipe gets past its argument parser (a renamed or removed flag fails
    here), run from a scratch folder so that a recipe's redirections write nothing that matters."""
    assert_parses(recipe_commands(block, tmp_path), block.name, monkeypatch, capsys)


RESULTS = sorted((ROOT / "results").glob("*.json"))


@pytest.mark.parametrize("path", RESULTS, ids=[p.name for p in RESULTS])
def test_results_commands_parse(path: Path, monkeypatch, capsys):
    """The command stored in each results file still parses, so every figure can be re-made by
    running it again (a script's renamed flag would strand the results made with the old one)."""
    import json
    import shlex

    command = json.loads(path.read_text(encoding="utf-8")).get("command")
    if command is None:
        pytest.skip(f"{path.name} stores no command")
    argv = shlex.split(command)
    assert argv[0] == "bioprune" or argv[:2] == ["python", "-m"], f"{path.name}: run it as python -m: {command}"
    assert_parses([argv], path.name, monkeypatch, capsys)