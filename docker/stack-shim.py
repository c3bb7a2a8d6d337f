#!/usr/bin/env python3
"""A stand-in for Haskell's `stack` in orch's offline toolchain image.

seL4's build compiles capDL-tool by running its Makefile, which calls `stack build` and
`stack install` (and `stack exec` in its tests). Real stack downloads a compiler and a
package snapshot; here the compiler and libraries are Debian's (ghc + libghc-*-dev), so
this script reads the package's .cabal file and runs `ghc --make -hide-all-packages` with
one `-package` per build-depends entry, ignoring version bounds (Debian's versions are
older than the Stackage snapshot's, and the code builds with them).

Supported: `stack build [--fast]`, `stack install [--fast]` (build unless `stack build`
just did, then copy the executables to stack.yaml's local-bin-path), `stack exec PROG
[--] ARGS`, `stack setup`, `stack --version`, `stack path --local-bin`. Anything else
fails with a clear message.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

WORK_DIR = Path(".stack-work") / "orch-ghc"


@dataclass
class Executable:
    name: str
    main_is: str = "Main.hs"
    depends: list[str] = field(default_factory=list)
    source_dirs: list[str] = field(default_factory=lambda: ["."])
    language: str | None = None
    ghc_options: list[str] = field(default_factory=list)


def strip_comment(line: str) -> str:
    return re.sub(r"(^|\s)--.*$", "", line).rstrip()


def cabal_sections(text: str) -> list[tuple[str, dict[str, str]]]:
    """Split a .cabal file into (section header, {field: value}) pairs; indented
    continuation lines are joined onto their field."""
    sections: list[tuple[str, dict[str, str]]] = [("", {})]
    current: str | None = None
    for raw in text.splitlines():
        line = strip_comment(raw)
        if not line.strip():
            continue
        indented = line[0].isspace()
        match = re.match(r"\s*([A-Za-z][\w-]*)\s*:(.*)$", line)
        if not indented and not match:
            sections.append((line.strip(), {}))
            current = None
        elif match:
            current = match.group(1).lower()
            sections[-1][1][current] = match.group(2).strip()
        elif current is not None:
            sections[-1][1][current] += " " + line.strip()
    return sections


def read_executables(cabal: Path) -> list[Executable]:
    executables = []
    for header, fields in cabal_sections(cabal.read_text()):
        if not header.lower().startswith("executable "):
            continue
        depends = [re.split(r"[\s<>=^]", d.strip(), maxsplit=1)[0]
                   for d in fields.get("build-depends", "").split(",") if d.strip()]
        executables.append(Executable(
            name=header.split()[1],
            main_is=fields.get("main-is", "Main.hs"),
            depends=depends,
            source_dirs=fields.get("hs-source-dirs", ".").replace(",", " ").split() or ["."],
            language=fields.get("default-language"),
            ghc_options=[o for o in fields.get("ghc-options", "").split() if o != "-Werror"],
        ))
    return executables


def find_cabal() -> Path:
    files = sorted(Path(".").glob("*.cabal"))
    if not files:
        sys.exit("stack (orch stand-in): no .cabal file in the current directory")
    return files[0]


def local_bin_path() -> Path:
    stack_yaml = Path("stack.yaml")
    if stack_yaml.is_file():
        match = re.search(r"^local-bin-path:\s*(\S+)", stack_yaml.read_text(), re.MULTILINE)
        if match:
            return Path(os.path.expanduser(match.group(1))).absolute()
    return Path.home() / ".local" / "bin"


def build(fast: bool) -> list[Path]:
    built = []
    for exe in read_executables(find_cabal()):
        out_dir = WORK_DIR / exe.name
        out_dir.mkdir(parents=True, exist_ok=True)
        binary = out_dir / exe.name
        command = ["ghc", "--make", "-hide-all-packages", "-outputdir", str(out_dir), "-o", str(binary)]
        command += [f"-package={p}" for p in exe.depends]
        command += [f"-i{d}" for d in exe.source_dirs]
        if exe.language:
            command.append(f"-X{exe.language}")
        command += exe.ghc_options
        if fast:
            command.append("-O0")
        main = next((Path(d) / exe.main_is for d in exe.source_dirs if (Path(d) / exe.main_is).exists()),
                    Path(exe.main_is))
        command.append(str(main))
        print("stack (orch stand-in):", " ".join(command), file=sys.stderr, flush=True)
        subprocess.run(command, check=True)
        built.append(binary)
    return built


def already_built() -> list[Path] | None:
    """The executables of an earlier `stack build`, if every one is newer than every
    source file: `stack install` right after `stack build --fast` (what capDL-tool's
    Makefile does) then just copies them, as the Makefile intends."""
    binaries = [WORK_DIR / exe.name / exe.name for exe in read_executables(find_cabal())]
    if not all(b.is_file() for b in binaries):
        return None
    sources = [p for p in Path(".").rglob("*") if p.suffix in (".hs", ".cabal") and WORK_DIR not in p.parents]
    newest_source = max((p.stat().st_mtime for p in sources), default=0.0)
    if min(b.stat().st_mtime for b in binaries) < newest_source:
        return None
    return binaries


def install(fast: bool) -> None:
    target = local_bin_path()
    target.mkdir(parents=True, exist_ok=True)
    for binary in already_built() or build(fast):
        shutil.copy2(binary, target / binary.name)
        print(f"Copied executable to {target / binary.name}", file=sys.stderr)


def exec_program(args: list[str]) -> None:
    if not args:
        sys.exit("stack (orch stand-in): exec needs a program")
    if "--" in args:
        args = [args[0], *args[args.index("--") + 1:]]
    program = args[0]
    for candidate in (local_bin_path() / program, WORK_DIR / program / program):
        if candidate.is_file():
            program = str(candidate.absolute())
            break
    os.execvp(program, [program, *args[1:]])


def main(argv: list[str]) -> None:
    options = [a for a in argv if a.startswith("-")]
    words = [a for a in argv if not a.startswith("-")]
    if "--version" in options and not words:
        print("Version 2.0.0 (orch stand-in: Debian ghc, no downloads)")
        return
    command = words[0] if words else ""
    try:
        if command == "build":
            build("--fast" in options)
        elif command == "install":
            install("--fast" in options)
        elif command == "exec":
            exec_program(argv[argv.index("exec") + 1:])
        elif command == "setup":
            subprocess.run(["ghc", "--version"], check=True)
        elif command == "path" and "--local-bin" in options:
            print(local_bin_path().resolve())
        else:
            sys.exit(f"stack (orch stand-in): unsupported command: stack {' '.join(argv)}")
    except subprocess.CalledProcessError as error:
        sys.exit(error.returncode)


if __name__ == "__main__":
    main(sys.argv[1:])
