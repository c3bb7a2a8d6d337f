"""The build spec: which app and platform to build, with which CMake options, as which variants.

A spec comes from a patchset's ``[build]`` and ``[variants.<name>]`` tables (raw dicts, as
:mod:`orchestrator.patchset.apply` reads them), can be overridden from the command line with
:func:`override`, and is checked against the app's ``settings.cmake`` with :func:`check_spec`.
Every problem is one :class:`InputError` naming the file and the key at fault.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from orchestrator.build.eras import ImageRule, parse_rules
from orchestrator.errors import InputError
from orchestrator.patchset.params import ParamDef, Setting, parse_assignment, parse_params
from orchestrator.workspace.tree import SourceTree

DEFAULT_IMAGE = "trustworthysystems/camkes:latest"
IMAGES_DIR_OPTION = "CAMKES_VM_IMAGES_DIR"

# Platforms that only exist as AArch64 (the build needs -DAARCH64=1 or KernelSel4Arch=aarch64).
_AARCH64_ONLY = frozenset({"odroidc2", "odroidc4", "tx1", "tx2", "zcu102", "imx8mq-evk", "imx8mm-evk",
                           "rockpro64", "rpi4", "hikey", "bcm2711", "maaxboard", "imx93"})
# CPUs whose presence in a platform's settings means an AArch64 build.
_AARCH64_CPUS = ("cortex-a53", "cortex-a55", "cortex-a57", "cortex-a72", "cortex-a76")
_RISCV_PLATFORMS = frozenset({"spike", "hifive", "polarfire", "qemu-riscv-virt", "ariane", "cheshire",
                              "star64", "rocketchip"})
_X86_PLATFORMS = frozenset({"pc99", "x86_64", "ia32"})
_OPTION_RE = re.compile(r"^-D([A-Za-z_][A-Za-z0-9_]*)(:[A-Z]+)?=(.*)$", re.S)


@dataclass(frozen=True)
class Expectation:
    """What a variant is expected to do when booted: ``verdict`` pass/fail, optionally a
    ``cause`` (a glob: ``vmm-*``). The one expectation record: the report holds it too."""

    verdict: str
    cause: str | None = None

    def met_by(self, verdict: str | None, cause: str | None) -> bool:
        if verdict != self.verdict:
            return False
        return self.cause is None or (cause is not None and fnmatch.fnmatchcase(cause, self.cause))

    def describe(self) -> str:
        return self.verdict if self.cause is None else f"{self.verdict} ({self.cause})"


@dataclass(frozen=True)
class VariantSpec:
    """One image to build: the patchsets applied (in order) and extra CMake options."""

    name: str
    patchsets: tuple[str, ...]
    cmake: tuple[str, ...] = ()
    expect: Expectation | None = None
    params: tuple[Setting, ...] = ()  # parameter values, edited in on top of the patches


@dataclass(frozen=True)
class BuildSpec:
    """App, platform, common CMake options, build image and the variants of one build."""

    app: str
    platform: str
    cmake: tuple[str, ...]
    variants: tuple[VariantSpec, ...]
    toolchain_image: str = DEFAULT_IMAGE  # the Docker image builds run in
    origin: str = "build spec"  # where it came from, for error messages
    params: Mapping[str, ParamDef] = field(default_factory=dict)  # the patchset's [params]
    image_rules: tuple[ImageRule, ...] = ()  # [[build.images]]: era-matched images (orch bisect)

    def variant(self, name: str) -> VariantSpec:
        for v in self.variants:
            if v.name == name:
                return v
        known = ", ".join(v.name for v in self.variants) or "none"
        raise InputError(f"{self.origin}: no variant named '{name}'", hint=f"variants: {known}")

    def options_for(self, variant: VariantSpec) -> tuple[str, ...]:
        """The variant's full CMake option list: the spec's, then the variant's (later wins)."""
        return merge_options(self.cmake, variant.cmake)

    def images_dir(self, variant: VariantSpec) -> Path | None:
        """The variant's ``CAMKES_VM_IMAGES_DIR`` (global or per variant), if one is set."""
        value = option_value(self.options_for(variant), IMAGES_DIR_OPTION)
        return Path(value) if value else None

    @property
    def boot_image_name(self) -> str:
        """The boot image the build produces (what QEMU boots), relative to the build directory."""
        return f"images/capdl-loader-image-{platform_arch(self.platform)}-{self.platform}"


@dataclass(frozen=True)
class SpecCheck:
    """Non-fatal findings of :func:`check_spec` (fatal ones raise)."""

    warnings: list[str] = field(default_factory=list)
    settings_file: Path | None = None


def platform_arch(platform: str) -> str:
    """The architecture part of seL4's image name (``capdl-loader-image-<arch>-<platform>``)."""
    if platform in _RISCV_PLATFORMS:
        return "riscv"
    if platform in _X86_PLATFORMS:
        return "x86_64"
    return "arm"


def parse_option(option: str, where: str) -> tuple[str, str]:
    """``-DNAME=value`` or ``-DNAME:TYPE=value`` -> (NAME, value); anything else is an error."""
    match = _OPTION_RE.match(option)
    if match is None:
        raise InputError(
            f"{where}: cmake option '{option}' is not of the form -DNAME=value",
            hint="orch passes these to init-build.sh; other cmake flags are not supported",
        )
    return match.group(1), match.group(3)


def option_value(options: Sequence[str], name: str) -> str | None:
    """The value the last ``-D<name>=`` in ``options`` sets, or None."""
    value = None
    for option in options:
        match = _OPTION_RE.match(option)
        if match and match.group(1) == name:
            value = match.group(3)
    return value


def merge_options(base: Sequence[str], extra: Sequence[str]) -> tuple[str, ...]:
    """``base`` then ``extra``; an option in ``extra`` replaces the one of the same name."""
    def name(option: str) -> str:
        match = _OPTION_RE.match(option)
        return match.group(1) if match else option

    replaced = {name(o) for o in extra}
    return tuple(o for o in base if name(o) not in replaced) + tuple(extra)


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{where} must be a list of strings")
    return tuple(value)


def _string(table: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{where}: '{key}' must be a non-empty string")
    return value


def _images_dir_option(option: str, where: str) -> str:
    """Make ``-DCAMKES_VM_IMAGES_DIR=~/x`` absolute and check the directory exists."""
    name, value = parse_option(option, where)
    if name != IMAGES_DIR_OPTION:
        return option
    path = Path(value).expanduser()
    if not path.is_absolute():
        raise InputError(f"{where}: {IMAGES_DIR_OPTION} must be an absolute path, not '{value}'")
    if not path.is_dir():
        raise InputError(
            f"{where}: {IMAGES_DIR_OPTION} '{value}' is not a directory",
            hint="point it at a directory laid out like camkes-vm-images",
        )
    return f"-D{IMAGES_DIR_OPTION}={path}"


def _options(value: Any, where: str) -> tuple[str, ...]:
    options = _strings(value, where)
    for option in options:
        parse_option(option, where)
    return tuple(_images_dir_option(o, where) for o in options)


def _expectation(value: Any, where: str) -> Expectation | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InputError(f"{where}.expect must be a table like {{ verdict = \"pass\" }}")
    verdict = value.get("verdict")
    if verdict not in ("pass", "fail"):
        raise InputError(f"{where}.expect.verdict must be \"pass\" or \"fail\", not {verdict!r}")
    cause = value.get("cause")
    if cause is not None and not isinstance(cause, str):
        raise InputError(f"{where}.expect.cause must be a string")
    unknown = set(value) - {"verdict", "cause"}
    if unknown:
        raise InputError(f"{where}.expect: unknown key '{sorted(unknown)[0]}'")
    return Expectation(verdict=verdict, cause=cause)


def _variant(name: str, table: Any, origin: str) -> VariantSpec:
    where = f"{origin}: [variants.{name}]"
    if not isinstance(table, Mapping):
        raise InputError(f"{where} must be a table")
    unknown = set(table) - {"patchsets", "cmake", "expect"}
    if unknown:
        raise InputError(f"{where}: unknown key '{sorted(unknown)[0]}'",
                         hint="known keys: patchsets, cmake, expect")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise InputError(f"{where}: variant names may use letters, digits, '.', '_' and '-' only")
    return VariantSpec(
        name=name,
        patchsets=_strings(table.get("patchsets", []), f"{where} patchsets"),
        cmake=_options(table.get("cmake", []), f"{where} cmake"),
        expect=_expectation(table.get("expect"), where),
    )


def parse_spec(
    name: str,
    requires: Sequence[str],
    build: Mapping[str, Any] | None,
    variants: Mapping[str, Any] | None,
    origin: str,
    params: Mapping[str, Any] | None = None,
) -> BuildSpec:
    """The spec of patchset ``name`` from its raw ``[build]`` and ``[variants]`` tables.

    Without variants there are two: ``base`` (the required patchsets only) and ``<name>``
    (required + the patchset itself)."""
    if not build:
        raise InputError(
            f"{origin}: no [build] table",
            hint='add [build] with app, platform and cmake = ["-DPLATFORM=...", ...]',
        )
    unknown = set(build) - {"app", "platform", "cmake", "image", "images"}
    if unknown:
        raise InputError(f"{origin}: [build]: unknown key '{sorted(unknown)[0]}'",
                         hint="known keys: app, platform, cmake, image, images")
    where = f"{origin}: [build]"
    parsed = tuple(_variant(n, t, origin) for n, t in (variants or {}).items())
    if not parsed:
        parsed = (
            VariantSpec("base", tuple(requires)),
            VariantSpec(name, (*requires, name)),
        )
    return BuildSpec(
        app=_string(build, "app", where),
        platform=_string(build, "platform", where),
        cmake=_options(build.get("cmake", []), f"{where} cmake"),
        variants=parsed,
        toolchain_image=_string(build, "image", where, DEFAULT_IMAGE),
        origin=origin,
        params=parse_params(params, origin),
        image_rules=parse_rules(build.get("images"), where),
    )


def spec_for(patchset: Any) -> BuildSpec:
    """The spec of a loaded patchset (anything with name, requires, build, variants, path)."""
    path = getattr(patchset, "path", None)
    origin = str(Path(path) / "patchset.toml") if path is not None else f"patchset {patchset.name}"
    if path is not None and Path(path).name == "patchset.toml":
        origin = str(path)
    return parse_spec(patchset.name, tuple(getattr(patchset, "requires", ())),
                      getattr(patchset, "build", None), getattr(patchset, "variants", None), origin,
                      getattr(patchset, "params", None))


def _parse_variant_arg(arg: str, spec: BuildSpec) -> VariantSpec:
    """``name`` selects a variant of the spec; ``name=ps1+ps2`` defines one (``name=`` none)."""
    if "=" not in arg:
        return spec.variant(arg)
    name, _, patchsets = arg.partition("=")
    chosen = tuple(p for p in re.split(r"[+,]", patchsets) if p)
    return _variant(name, {"patchsets": list(chosen)}, "--variant")


def override(
    spec: BuildSpec,
    *,
    variants: Sequence[str] | None = None,
    cmake: Sequence[str] | None = None,
    toolchain_image: str | None = None,
    app: str | None = None,
    platform: str | None = None,
    params: Sequence[str] | None = None,
) -> BuildSpec:
    """The spec with command-line overrides: ``variants`` selects (``4k``) or defines
    (``mine=vm-2g+largepage``) variants, ``cmake`` adds/replaces options for all of them,
    ``params`` (``mempool=96M``) sets declared parameters for all of them."""
    chosen = spec.variants
    if variants:
        chosen = tuple(_parse_variant_arg(v, spec) for v in variants)
        names = [v.name for v in chosen]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate:
            raise InputError(f"--variant: '{duplicate}' given twice")
    if params:
        values = dict(parse_assignment(p, spec.params) for p in params)
        chosen = tuple(with_params(v, values) for v in chosen)
    options = spec.cmake
    if cmake:
        options = merge_options(options, _options(list(cmake), "--cmake"))
    return replace(
        spec,
        variants=chosen,
        cmake=options,
        toolchain_image=toolchain_image or spec.toolchain_image,
        app=app or spec.app,
        platform=platform or spec.platform,
    )


def with_params(variant: VariantSpec, values: Mapping[str, int]) -> VariantSpec:
    """``variant`` with these parameter values (replacing same-named ones), sorted by name."""
    merged = {s.name: s.value for s in variant.params} | dict(values)
    return replace(variant, params=tuple(Setting(n, merged[n]) for n in sorted(merged)))


def _app_settings(tree: SourceTree, app: str) -> Path | None:
    """The app's settings.cmake: ``apps/**/<app>/settings.cmake`` in any project."""
    for checkout in tree.projects.values():
        apps = checkout.directory / "apps"
        if not apps.is_dir():
            continue
        for candidate in sorted(apps.glob(f"**/{app}/settings.cmake")):
            return candidate
    return None


def _supported_platforms(text: str) -> list[str] | None:
    match = re.search(r'set\(\s*supported\s+"([^"]*)"\s*\)', text)
    return [p for p in match.group(1).split(";") if p] if match else None


def _is_aarch64(platform: str, settings_text: str) -> bool:
    if platform in _AARCH64_ONLY:
        return True
    block = re.search(rf'"\$\{{PLATFORM\}}"\s+STREQUAL\s+"{re.escape(platform)}"(.*?)(elseif|endif)',
                      settings_text, re.S)
    scope = block.group(1) if block else ""
    return any(cpu in scope for cpu in _AARCH64_CPUS)


def check_spec(spec: BuildSpec, tree: SourceTree) -> SpecCheck:
    """Check every variant's options against the platform and the app's settings.cmake.

    Raises :class:`InputError` for options the build cannot work with (PLATFORM or
    CAMKES_VM_APP contradicting the spec, an AArch64 platform without -DAARCH64=1, a platform
    the app does not support); returns warnings for the doubtful rest."""
    check = SpecCheck(settings_file=_app_settings(tree, spec.app))
    text = check.settings_file.read_text(errors="replace") if check.settings_file else ""
    if check.settings_file is None:
        check.warnings.append(f"no settings.cmake found for app '{spec.app}'; options not checked")
    supported = _supported_platforms(text)
    if supported is not None and spec.platform not in supported:
        raise InputError(
            f"{spec.origin}: app '{spec.app}' does not support platform '{spec.platform}'",
            hint=f"{check.settings_file} supports: {', '.join(supported)}",
        )
    aarch64 = _is_aarch64(spec.platform, text)
    for variant in spec.variants:
        options = spec.options_for(variant)
        where = f"{spec.origin}: variant '{variant.name}'"
        platform = option_value(options, "PLATFORM")
        if platform is None:
            raise InputError(f"{where}: cmake options lack -DPLATFORM={spec.platform}")
        if platform != spec.platform:
            raise InputError(f"{where}: -DPLATFORM={platform} contradicts platform = \"{spec.platform}\"")
        app = option_value(options, "CAMKES_VM_APP")
        if app is not None and app != spec.app:
            raise InputError(f"{where}: -DCAMKES_VM_APP={app} contradicts app = \"{spec.app}\"")
        if app is None and check.settings_file is not None and "CAMKES_VM_APP" in text:
            check.warnings.append(f"{where}: no -DCAMKES_VM_APP={spec.app}")
        is_64 = option_value(options, "AARCH64") in ("1", "ON", "TRUE") or option_value(
            options, "KernelSel4Arch") == "aarch64"
        if aarch64 and not is_64:
            raise InputError(
                f"{where}: platform '{spec.platform}' is AArch64 here but -DAARCH64=1 is missing",
                hint="without it init-build.sh fails with 'Unable to find valid cross-compiling GCC'",
            )
    return check
