"""Parameters as data: ``[params.NAME]`` in ``patchset.toml``, and the edits a value makes.

A parameter names one value (a size like ``96M``/``2G``, or a plain number) and the edits
that set it in the source tree: per edit a file (a workspace path, project path included), a
regular expression whose first group (or whole match) is replaced by ``format`` filled in
with the value, and, for a line the file does not have yet, ``insert_after`` + ``line``.
One value can edit several files with values derived from it (``[params.NAME.derive]``:
small arithmetic expressions over ``value``), so a guest-RAM parameter sets ``VM_RAM_SIZE``,
the untyped MMIO list, the kernel DTS reservation and ``QEMU_MEMORY`` at once::

    [params.mempool]
    file = "projects/vm-examples/apps/Arm/vm_minimal/qemu-arm-virt/devices.camkes"
    pattern = 'vm0\\.allocator_mempool_size = (0x[0-9a-fA-F]+|\\d+);'
    format = "0x{value:x}"
    insert_after = 'vm0\\.untyped_mmios'       # when the pattern is absent: add `line`
    line = "        vm0.allocator_mempool_size = 0x{value:x};"

The edits are applied on top of a variant's patches as one generated commit per project
(fixed author and date, so the same values give the same commit), which keeps builds keyed
by content: see :func:`apply_values` and :mod:`orchestrator.build.variant_tree`.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from orchestrator.analysis.memory import GiB, KiB, MiB, format_bytes, parse_size
from orchestrator.digest import json_digest
from orchestrator.errors import InputError
from orchestrator.patchset.patchfile import check_relative_path
from orchestrator.workspace import gitops
from orchestrator.workspace.tree import SourceTree

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PARAM_KEYS = {"file", "pattern", "format", "insert_after", "line", "all", "edit", "derive",
               "default", "description", "unit"}
_EDIT_KEYS = {"file", "pattern", "format", "insert_after", "line", "all"}
COMMIT_IDENTITY = {"GIT_AUTHOR_NAME": "orch", "GIT_AUTHOR_EMAIL": "orch@localhost",
                   "GIT_COMMITTER_NAME": "orch", "GIT_COMMITTER_EMAIL": "orch@localhost",
                   "GIT_AUTHOR_DATE": "2000-01-01T00:00:00+0000",
                   "GIT_COMMITTER_DATE": "2000-01-01T00:00:00+0000"}
"""Generated commits are deterministic: same tree and values, same commit."""


@dataclass(frozen=True)
class Edit:
    """One file edit of a parameter."""

    file: str  # workspace path: project path + path inside it
    pattern: str | None
    format: str
    insert_after: str | None = None
    line: str | None = None
    all: bool = False  # replace every match, not only the first


@dataclass(frozen=True)
class ParamDef:
    """A parameter: its edits, derived values (name -> expression over ``value``), default."""

    name: str
    edits: tuple[Edit, ...]
    derive: tuple[tuple[str, str], ...] = ()
    default: int | None = None
    unit: str = "size"  # size: shown as 96 MiB; number: shown as is
    description: str = ""

    def show(self, value: int) -> str:
        return format_bytes(value) if self.unit == "size" else str(value)


# --- parsing ----------------------------------------------------------------------------------


def _regex(text: Any, where: str) -> str:
    if not isinstance(text, str) or not text:
        raise InputError(f"{where} must be a non-empty regular expression")
    try:
        re.compile(text, re.M)
    except re.error as error:
        raise InputError(f"{where}: invalid regular expression: {error}") from None
    return text


def _edit(table: Mapping[str, Any], where: str) -> Edit:
    unknown = set(table) - _EDIT_KEYS
    if unknown:
        raise InputError(f"{where}: unknown key '{sorted(unknown)[0]}'",
                         hint="known keys: " + ", ".join(sorted(_EDIT_KEYS)))
    file = table.get("file")
    if not isinstance(file, str) or not file:
        raise InputError(f"{where}: needs file = \"<project path>/<path in it>\"")
    check_relative_path(file, f"{where}: file")
    pattern = _regex(table["pattern"], f"{where}.pattern") if "pattern" in table else None
    insert_after = _regex(table["insert_after"], f"{where}.insert_after") if "insert_after" in table else None
    fmt, line = table.get("format", "{value}"), table.get("line")
    if not isinstance(fmt, str) or (line is not None and not isinstance(line, str)):
        raise InputError(f"{where}: format and line must be strings")
    if pattern is None and insert_after is None:
        raise InputError(f"{where}: needs pattern (and/or insert_after + line)")
    if insert_after is not None and line is None:
        raise InputError(f"{where}: insert_after needs line = \"...\" (the text to insert)")
    return Edit(file.strip("/"), pattern, fmt, insert_after, line, bool(table.get("all", False)))


def _param(name: str, table: Any, origin: str) -> ParamDef:
    where = f"{origin}: [params.{name}]"
    if not _NAME.match(name):
        raise InputError(f"{where}: parameter names may use letters, digits and '_' only")
    if not isinstance(table, Mapping):
        raise InputError(f"{where} must be a table")
    unknown = set(table) - _PARAM_KEYS
    if unknown:
        raise InputError(f"{where}: unknown key '{sorted(unknown)[0]}'",
                         hint="known keys: " + ", ".join(sorted(_PARAM_KEYS)))
    edits: list[Edit] = []
    if "file" in table:
        edits.append(_edit({k: v for k, v in table.items() if k in _EDIT_KEYS}, where))
    extra = table.get("edit", [])
    if not isinstance(extra, list):
        raise InputError(f"{where}: edit must be an array of tables ([[params.{name}.edit]])")
    edits += [_edit(e if isinstance(e, Mapping) else {}, f"{where}.edit[{i}]") for i, e in enumerate(extra)]
    if not edits:
        raise InputError(f"{where}: no edits: give file/pattern/format or [[params.{name}.edit]]")
    derive = table.get("derive", {})
    if not isinstance(derive, Mapping) or not all(isinstance(v, str) for v in derive.values()):
        raise InputError(f"{where}.derive must map names to expressions (strings)")
    for key, expression in derive.items():
        if not _NAME.match(key) or key == "value":
            raise InputError(f"{where}.derive: '{key}' is not a usable name")
        _parse_expression(expression, f"{where}.derive.{key}")
    unit = table.get("unit", "size")
    if unit not in ("size", "number"):
        raise InputError(f"{where}: unit must be \"size\" or \"number\"")
    default = parse_value(table["default"], f"{where}.default") if "default" in table else None
    description = table.get("description", "")
    return ParamDef(name, tuple(edits), tuple(derive.items()), default, unit, str(description))


def parse_params(table: Mapping[str, Any] | None, origin: str) -> dict[str, ParamDef]:
    """The ``[params]`` table of a patchset.toml (``origin`` names it in errors)."""
    if not table:
        return {}
    if not isinstance(table, Mapping):
        raise InputError(f"{origin}: 'params' must be a table")
    return {name: _param(name, value, origin) for name, value in table.items()}


def parse_value(text: Any, where: str) -> int:
    """A parameter value: ``96M``, ``2G``, ``4k``, ``0x6000000``, ``18``."""
    value = parse_size(text, where)
    if value < 0:
        raise InputError(f"{where}: must not be negative")
    return value


def parse_assignment(text: str, known: Mapping[str, ParamDef], where: str = "--set") -> tuple[str, int]:
    """``NAME=VALUE`` for a declared parameter."""
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise InputError(f"{where} {text!r}: expected NAME=VALUE, e.g. mempool=96M")
    if name not in known:
        declared = ", ".join(sorted(known)) or "none"
        raise InputError(f"{where} {text!r}: no parameter '{name}' in the patchset",
                         hint=f"declared ([params.NAME] in patchset.toml): {declared}")
    return name, parse_value(raw, f"{where} {name}")


# --- derived values: a small safe arithmetic ----------------------------------------------------

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
    ast.LShift: operator.lshift, ast.RShift: operator.rshift,
}
_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
}
CONSTANTS = {"KiB": KiB, "MiB": MiB, "GiB": GiB}


def blocks(base: int, size: int, max_bits: int, fmt: str = '"0x{base:x}:{bits}"', sep: str = ", ") -> str:
    """``size`` bytes from ``base`` as naturally aligned power-of-two blocks of at most
    ``2**max_bits`` bytes, each formatted (``base``, ``bits``, ``size``) and joined: the
    shape of camkes-vm's ``untyped_mmios`` list."""
    parts: list[str] = []
    address, end = base, base + size
    while address < end:
        bits = min(max_bits, (address & -address).bit_length() - 1 if address else max_bits)
        while (1 << bits) > end - address:
            bits -= 1
        parts.append(fmt.format(base=address, bits=bits, size=1 << bits))
        address += 1 << bits
    return sep.join(parts)


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "min": min, "max": max, "log2": lambda v: int(math.log2(v)), "blocks": blocks, "hex": hex,
}


def _parse_expression(text: str, where: str) -> ast.expr:
    try:
        return ast.parse(text, mode="eval").body
    except SyntaxError as error:
        raise InputError(f"{where}: not an expression: {error.msg}") from None


def evaluate(text: str, names: Mapping[str, Any], where: str) -> Any:
    """Evaluate ``text``: numbers, strings, names, + - * // % ** << >>, comparisons,
    ``a if c else b`` and min/max/log2/blocks/hex calls. Nothing else."""

    def walk(node: ast.expr) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, str)):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in names:
                return names[node.id]
            raise InputError(f"{where}: unknown name '{node.id}'", hint="known: " + ", ".join(sorted(names)))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return _BINARY[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE:
            return _COMPARE[type(node.ops[0])](walk(node.left), walk(node.comparators[0]))
        if isinstance(node, ast.IfExp):
            return walk(node.body) if walk(node.test) else walk(node.orelse)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS
                and not node.keywords):
            return _FUNCTIONS[node.func.id](*(walk(a) for a in node.args))
        raise InputError(f"{where}: '{ast.unparse(node)}' is not allowed in a parameter expression")

    try:
        return walk(_parse_expression(text, where))
    except (ArithmeticError, ValueError, TypeError) as error:
        raise InputError(f"{where}: {error}") from None


def names_for(param: ParamDef, value: int) -> dict[str, Any]:
    """``value``, the size constants and the parameter's derived values."""
    names: dict[str, Any] = {**CONSTANTS, "value": value}
    for key, expression in param.derive:
        names[key] = evaluate(expression, names, f"[params.{param.name}.derive].{key}")
    return names


# --- applying ---------------------------------------------------------------------------------


def _fill(template: str, names: Mapping[str, Any], where: str) -> str:
    try:
        return template.format(**names)
    except (KeyError, IndexError, ValueError) as error:
        raise InputError(f"{where}: cannot fill in {template!r}: {error!r}") from None


def edit_text(text: str, edit: Edit, names: Mapping[str, Any], where: str) -> str:
    """``text`` with ``edit`` made: the pattern's group (or match) replaced, else ``line``
    inserted after the first line ``insert_after`` matches."""
    if edit.pattern is not None:
        regex = re.compile(edit.pattern, re.M)
        replacement = _fill(edit.format, names, where)
        matches = list(regex.finditer(text))
        if matches:
            for match in reversed(matches if edit.all else matches[:1]):
                start, end = match.span(1) if regex.groups else match.span()
                text = text[:start] + replacement + text[end:]
            return text
    if edit.insert_after is not None and edit.line is not None:
        anchor = re.search(edit.insert_after, text, re.M)
        if anchor is not None:
            end = text.find("\n", anchor.end())
            end = len(text) if end < 0 else end + 1
            prefix = text[:end] if text[:end].endswith("\n") or not text[:end] else text[:end] + "\n"
            return prefix + _fill(edit.line, names, where) + "\n" + text[end:]
        raise InputError(f"{where}: neither pattern nor insert_after /{edit.insert_after}/ "
                         f"matches {edit.file}")
    raise InputError(f"{where}: pattern /{edit.pattern}/ matches nothing in {edit.file}",
                     hint="add insert_after + line to add it when absent")


def _project_of(tree: SourceTree, file: str, where: str) -> tuple[str, str]:
    for path in sorted(tree.projects, key=len, reverse=True):
        if file.startswith(path.rstrip("/") + "/"):
            return path, file[len(path.rstrip("/")) + 1:]
    raise InputError(f"{where}: {file} is in no project of the workspace",
                     hint="file = \"<project path>/<path inside the project>\"")


@dataclass(frozen=True)
class Setting:
    """A parameter set to a value (what a variant or sweep probe asks for)."""

    name: str
    value: int


def settings_key(params: Mapping[str, ParamDef], settings: Sequence[Setting]) -> str:
    """What the generated commit depends on: the definitions used and the values."""
    ordered = sorted(settings, key=lambda s: s.name)
    return json_digest([[s.name, s.value, asdict(params[s.name])] for s in ordered])


def describe(settings: Sequence[Setting], params: Mapping[str, ParamDef]) -> str:
    return ", ".join(f"{s.name}={params[s.name].show(s.value) if s.name in params else s.value}"
                     for s in settings)


def apply_values(tree: SourceTree, params: Mapping[str, ParamDef],
                 settings: Sequence[Setting]) -> dict[str, str]:
    """Make every setting's edits in ``tree`` and commit them, one generated commit per project
    touched (``orch params: mempool=96 MiB``). Returns project path -> new HEAD."""
    changed: dict[str, list[str]] = {}
    for setting in settings:
        param = params[setting.name]
        names = names_for(param, setting.value)
        for index, edit in enumerate(param.edits):
            where = f"[params.{param.name}]" + (f" edit {index + 1}" if len(param.edits) > 1 else "")
            project, inner = _project_of(tree, edit.file, where)
            path = tree.projects[project].directory / inner
            try:
                text = path.read_text()
            except OSError as error:
                raise InputError(f"{where}: cannot read {edit.file}: {error.strerror}") from None
            new = edit_text(text, edit, names, where)
            if new != text:
                path.write_text(new)
                changed.setdefault(project, []).append(inner)
    heads: dict[str, str] = {}
    message = "orch params: " + describe(settings, params)
    for project, files in changed.items():
        directory = tree.projects[project].directory
        gitops.run(["checkout", "-q", "--detach"], cwd=directory)  # never move a patch branch
        gitops.run(["add", "--", *sorted(set(files))], cwd=directory)
        gitops.run(["commit", "-q", "--no-verify", "-m", message], cwd=directory, env=COMMIT_IDENTITY)
        heads[project] = gitops.run(["rev-parse", "HEAD"], cwd=directory)
    return heads


def declared_in(patchsets: Sequence[Any]) -> dict[str, ParamDef]:
    """Every parameter the patchsets declare (a later patchset's definition wins)."""
    found: dict[str, ParamDef] = {}
    for patchset in patchsets:
        origin = str(Path(getattr(patchset, "directory", ".")) / "patchset.toml")
        found.update(parse_params(getattr(patchset, "params", None), origin))
    return found
