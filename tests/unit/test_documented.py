"""The docs tell the truth about the front door: every Make target and variable a user can set, and every
environment variable the code reads, is documented; every documented target and variable exists.

Pure file scanning, so it runs in well under a second and keeps working when modules move: it walks the
whole tree (except .git, virtualenvs, build output and tests/) instead of naming files.

What counts as an environment variable the code reads:
- Python: a string constant naming a project variable (prefixes in PROJECT_PREFIXES), wherever it
  appears; and any upper-case name read through something called env/environ (`env.get("X")`,
  `os.environ["X"]`, `os.getenv("X")`, `"X" in env`).
- Shell (`*.sh`, `Monolitico/serve`, `Microservicos/start.sh`, `.ci/run`): `$X` / `${X}` with a project
  prefix, and any `${X:-default}`-style expansion (a default means the value may come from outside).
- Makefiles: `X ?= ...` (a default the user may override) and `$(X)` used but never assigned; as
  environment variables only those with a project prefix, the rest are Make variables.
The operating system's own variables (PATH, HOME, ...) are left out.
Documented means: named in docs/configuration.md or README.md (environment variables), or anywhere in
README.md and docs/*.md (Make targets and Make variables, which topic pages document).
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Never entered: version control, virtualenvs and caches anywhere; at the root, the tests and what
# `make setup`, `make build` and `make wheels` write (models, indexes, build output, wheels).
SKIPPED_ANYWHERE = {".git", ".venv", "venv", "__pycache__", "node_modules", ".pytest_cache"}
SKIPPED_AT_ROOT = {"tests", "models", "indexes", "build", "wheelhouse", "local_test"}
# Files the reverse check reads as code (Makefiles, Dockerfiles and entrypoints have no suffix).
CODE_SUFFIXES = {".py", ".sh", ".mk", ".ini", ".toml", ".cfg", ".txt", ".yml", ""}
SHELL_SCRIPTS = {"Monolitico/serve", "Microservicos/start.sh", ".ci/run"}
PROJECT_PREFIXES = ("RAG", "MODEL_SERVER", "SAGEMAKER", "SM", "BENCH", "SOAK", "FUZZ", "GPU_CHECK", "OTEL")
PREFIXED = rf"(?:{'|'.join(PROJECT_PREFIXES)})_[A-Z0-9_]*[A-Z0-9]"
UPPER = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+|[A-Z]{2,}")
# Names Make itself defines, and environment variables it passes through rather than reads.
MAKE_BUILTINS = {"MAKE", "MAKEFILE_LIST", "MAKECMDGOALS", "MAKEFLAGS", "CURDIR", "SHELL", "PATH", "PYTHONPATH"}
# The operating system's own variables: read, but not the project's to document.
SYSTEM_VARIABLES = {"PATH", "HOME", "USER", "LANG", "TMPDIR", "PYTHONPATH", "SHELL", "TERM", "PWD"}


def source_files(skipped_at_root: set[str] = SKIPPED_AT_ROOT) -> list[tuple[str, Path]]:
    """(path relative to the root, path) of every file outside the skipped folders (never entered)."""
    found = []
    for folder, subfolders, files in os.walk(ROOT):
        at_root = Path(folder) == ROOT
        subfolders[:] = sorted(
            name for name in subfolders if name not in SKIPPED_ANYWHERE and not (at_root and name in skipped_at_root)
        )
        for name in sorted(files):
            path = Path(folder) / name
            found.append((path.relative_to(ROOT).as_posix(), path))
    return found


def makefiles() -> list[Path]:
    """The top-level Makefile and its includes (the folder Makefiles only delegate to it)."""
    return [ROOT / "Makefile", *sorted((ROOT / "mk").glob("*.mk"))]


def documentation() -> dict[str, str]:
    """README.md and every docs/*.md page, by relative path."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return {page.relative_to(ROOT).as_posix(): page.read_text() for page in pages}


def _is_env(node: ast.AST) -> bool:
    """True for an expression that looks like an environment mapping: env, environ, os.environ, self.env..."""
    names = [n.id for n in ast.walk(node) if isinstance(n, ast.Name)] + [
        n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)
    ]
    return any("env" in name.lower() for name in names)


def _upper_constant(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and UPPER.fullmatch(node.value):
        return node.value
    return None


def python_reads(tree: ast.AST) -> set[str]:
    """Environment variables a Python module names or reads (see the module docstring)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(PREFIXED, node.value):
            names.add(node.value)
        elif isinstance(node, ast.Call) and node.args and _upper_constant(node.args[0]):
            function = node.func
            if (
                isinstance(function, ast.Attribute)
                and function.attr in ("get", "getenv", "setdefault", "pop")
                and (function.attr == "getenv" or _is_env(function.value))
            ):
                names.add(node.args[0].value)
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.ctx, ast.Load)
            and _upper_constant(node.slice)
            and _is_env(node.value)
        ):
            names.add(node.slice.value)
        elif (
            isinstance(node, ast.Compare)
            and _upper_constant(node.left)
            and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops)
            and any(_is_env(comparator) for comparator in node.comparators)
        ):
            names.add(node.left.value)
    return names


def shell_reads(text: str) -> set[str]:
    """Environment variables a shell script reads (see the module docstring)."""
    prefixed = set(re.findall(rf"\$\{{?({PREFIXED})\b", text))
    defaulted = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?[-=?]", text))
    return prefixed | {name for name in defaulted if name.isupper()}


def make_variables() -> dict[str, str]:
    """Variables a user may set on the make command line: `X ?=` defaults, and `$(X)` never assigned."""
    assigned, defaulted, used = set(), {}, {}
    for makefile in makefiles():
        text = makefile.read_text()
        where = makefile.relative_to(ROOT).as_posix()
        for name, operator in re.findall(r"^(?:export\s+|override\s+)?([A-Z][A-Z0-9_]*)\s*([?:+]?=)", text, re.M):
            if operator == "?=":
                defaulted.setdefault(name, where)
            else:
                assigned.add(name)
        # Target-specific assignments (`upload: export INDEX := $(INDEX)`) pass a value on; they set nothing new.
        for name in re.findall(r"\$[({]([A-Z][A-Z0-9_]*)[)}]", text):
            used.setdefault(name, where)
    unassigned = {
        name: where
        for name, where in used.items()
        if name not in assigned and name not in defaulted and name not in MAKE_BUILTINS
    }
    return {**defaulted, **unassigned}


def environment_reads() -> dict[str, set[str]]:
    """Every environment variable the code reads, with the files that read it."""
    reads: dict[str, set[str]] = {}

    def add(names: set[str], where: str) -> None:
        for name in names:
            reads.setdefault(name, set()).add(where)

    for relative, path in source_files():
        if path.suffix == ".py":
            add(python_reads(ast.parse(path.read_text(), filename=relative)), relative)
        elif path.suffix == ".sh" or relative in SHELL_SCRIPTS:
            add(shell_reads(path.read_text()), relative)
    for name, where in make_variables().items():
        if re.fullmatch(PREFIXED, name):
            add({name}, where)
    return {name: files for name, files in reads.items() if name not in SYSTEM_VARIABLES}


def make_targets() -> dict[str, str]:
    """Every explicit target of the Makefiles (not pattern rules or file targets), with its `## ` help or ""."""
    targets = {}
    for makefile in makefiles():
        for line in makefile.read_text().splitlines():
            match = re.match(r"^([a-zA-Z0-9][a-zA-Z0-9_. -]*?)\s*:(?![=:])(.*)$", line)
            if match and not line.startswith("\t"):
                help_text = match.group(2).split("## ", 1)[1] if "## " in match.group(2) else ""
                for target in match.group(1).split():
                    if not targets.get(target):
                        targets[target] = help_text
    return targets


def phony_targets() -> set[str]:
    """Every target a Makefile declares .PHONY."""
    return {
        target
        for makefile in makefiles()
        for line in re.findall(r"^\.PHONY:(.*)$", makefile.read_text(), re.M)
        for target in line.split()
    }


def code_text(markdown: str) -> list[str]:
    """The code of a Markdown page: fenced blocks and inline code spans (prose is left out, so "make sure"
    is not a target)."""
    fenced = re.findall(r"^```[^\n]*\n(.*?)^```", markdown, re.M | re.S)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", markdown, flags=re.M | re.S)
    return fenced + re.findall(r"`([^`\n]+)`", prose)


def documented_targets(text: str) -> set[str]:
    """Targets named as `make TARGET ...` in the code of `text`."""
    targets = set()
    for code in code_text(text):
        for tail in re.findall(r"(?<![\w-])make((?:[ \t]+[a-z][a-z0-9-]*(?![\w=/.]))+)", code):
            targets.update(tail.split())
    return targets


def configuration_table_variables() -> set[str]:
    """Every variable named in the first column of docs/configuration.md's tables."""
    names = set()
    for line in (ROOT / "docs" / "configuration.md").read_text().splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            names.update(name for name in re.findall(r"`([A-Z][A-Z0-9_]*)`", first_cell))
    return names


def mentioned(name: str, text: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", text) is not None


def test_every_help_target_is_documented_and_every_documented_target_exists():
    targets = make_targets()
    docs = documentation()
    named = {page: documented_targets(text) for page, text in docs.items()}
    all_named = set().union(*named.values())
    undocumented = sorted(target for target, help_text in targets.items() if help_text and target not in all_named)
    missing = sorted(
        f"make {target} (in {', '.join(page for page, found in named.items() if target in found)})"
        for target in all_named - set(targets)
    )
    assert not undocumented, (
        "Make targets with a `## ` help line that no page of README.md or docs/ names as "
        f"`make <target>`: {undocumented}"
    )
    assert not missing, f"targets the docs tell users to run that no Makefile defines: {missing}"


def test_every_phony_target_has_a_rule():
    without_rule = sorted(phony_targets() - set(make_targets()))
    assert not without_rule, (
        f".PHONY targets without a rule (`make` would do nothing and succeed): {without_rule}; "
        "remove them from .PHONY or give them a rule"
    )


def test_every_make_variable_is_documented():
    docs = "\n".join(documentation().values())
    undocumented = sorted(f"{name} ({where})" for name, where in make_variables().items() if not mentioned(name, docs))
    assert not undocumented, (
        f"Make variables a user can set that neither README.md nor docs/*.md mention: {undocumented}"
    )


def test_every_environment_variable_read_is_documented():
    docs = documentation()
    text = docs["README.md"] + docs["docs/configuration.md"]
    undocumented = sorted(
        f"{name} ({', '.join(sorted(files))})"
        for name, files in environment_reads().items()
        if not mentioned(name, text)
    )
    assert not undocumented, (
        f"environment variables the code reads that neither docs/configuration.md nor README.md names: {undocumented}"
    )


def test_every_configuration_table_variable_is_read_somewhere():
    """The reverse: a row of docs/configuration.md names something the code (tests included: the test
    variables) or the images and entrypoints actually use."""
    this_file = Path(__file__).resolve()
    corpus = []
    for _, path in source_files(SKIPPED_AT_ROOT - {"tests"}):
        if path.resolve() == this_file or path.suffix not in CODE_SUFFIXES:
            continue
        try:
            corpus.append(path.read_text())
        except UnicodeDecodeError:
            continue
    code = "\n".join(corpus)
    unused = sorted(name for name in configuration_table_variables() if not mentioned(name, code))
    assert not unused, f"docs/configuration.md documents variables that nothing in the repository uses: {unused}"
