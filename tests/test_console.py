"""Console rules: loading, ANSI stripping, incremental verdicts, memory parsing, and replays of
the two real vm_minimal consoles (byte by byte, CRLFs and ANSI codes included)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.boot.console import (
    ConsoleMatcher,
    RuleSet,
    load_rules,
    parse_free,
    parse_guest_memory,
    parse_meminfo,
    replay,
    rules_for,
    strip_ansi,
)
from orchestrator.boot.platform import load_platform
from orchestrator.errors import InputError
from tests.conftest import shared_data

# The interesting lines of the real 4K console (vm_minimal-qemu-arm-virt-2g-4k-fail.log), as
# captured: CR CR LF line ends, the kernel's ANSI colours.
FAIL_EXCERPT = (
    b"\r\r\nELF-loader started on CPU: ARM Ltd. Cortex-A53 r0p4\r\r\n"
    b"Bootstrapping kernel\r\r\n"
    b"Booting all finished, dropped to user space\r\r\n"
    b"\x1b[0m\x1b[1m<<\x1b[0m\x1b[32mseL4(CPU 0)\x1b[0m\x1b[1m [decodeUntypedInvocation/204 T0x813f81b400"
    b' "rootserver" @4006d8]: Untyped Retype: Insufficient memory (1 * 2097152 bytes needed,'
    b" 0 bytes available).>>\x1b[0m\r\r\n"
    b"run@main.c:1332 Invalid 'num_vcpus' attribute setting: Exceeds maximum number of supported"
    b" nodes. Capping value to CONFIG_MAX_NUM_NODES (1)\r\r\n"
    b"install_vm_devices@main.c:704 module name: init_ram\r\r\n"
    b"ram_ut_alloc_iterator@guest_ram.c:304 Failed to allocate page\r\r\n"
    b"map_vm_memory_reservation@guest_memory.c:477 Failed to get frame for reservation address"
    b" 0x8e83a000\r\r\n"
    b"map_ram_reservation@guest_ram.c:327 Failed to map new ram reservation\r\r\n"
    b"Assertion failed: !err (/host/ws/projects/vm/components/VM_Arm/src/modules/init_ram.c:"
    b" init_ram_module: 21)\r\r\n"
    b"\x01xQEMU: Terminated\r\n\r"
)

# ... and of the real LargePage console (vm_minimal-qemu-arm-virt-2g-largepage-pass.log).
PASS_EXCERPT = (
    b"\r\r\nELF-loader started on CPU: ARM Ltd. Cortex-A53 r0p4\r\r\n"
    b"Booting all finished, dropped to user space\r\r\n"
    b"install_vm_devices@main.c:704 module name: init_ram\r\r\n"
    b"Loading Kernel: 'linux'\r\r\n"
    b"[    0.000000] Booting Linux on physical CPU 0x0000000000 [0x410fd034]\r\r\n"
    b"Welcome to Buildroot\r\r\n"
    b"\rbuildroot login: "
)
SESSION_EXCERPT = (
    b"root\r\r\n# free -m\nfree -m\r\r\n"
    b"              total        used        free      shared  buff/cache   available\r\r\n"
    b"Mem:           1983          26        1954           1           1        1925\r\r\n"
    b"Swap:             0           0           0\r\r\n"
    b"# cat /proc/meminfo | head -3\ncat /proc/meminfo | head -3\r\r\n"
    b"MemTotal:        2030616 kB\r\r\nMemFree:         2001144 kB\r\r\n"
    b"MemAvailable:    1971360 kB\r\r\n# "
)


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return rules_for("qemu-arm-virt")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mine.toml"
    path.write_text(text)
    return path


def test_strip_ansi_keeps_the_text() -> None:
    raw = "\x1b[0m\x1b[1m<<\x1b[0m\x1b[32mseL4(CPU 0)\x1b[0m\x1b[1m [x]: y>>\x1b[0m\r"
    assert strip_ansi(raw) == "<<seL4(CPU 0) [x]: y>>"
    assert strip_ansi("\x01xQEMU: Terminated\ta") == "xQEMU: Terminated\ta"


def test_shipped_platform_has_the_issue_arguments() -> None:
    platform = load_platform("qemu-arm-virt")
    assert platform.qemu == "qemu-system-aarch64"
    assert platform.args == ("-machine", "virt,virtualization=on,highmem=off,secure=off",
                             "-cpu", "cortex-a53", "-nographic")
    with pytest.raises(InputError, match="unknown platform 'nope'"):
        load_platform("nope")


def test_failure_excerpt_byte_by_byte_fails_with_allocator_cause(rules: RuleSet) -> None:
    matcher = replay(rules, FAIL_EXCERPT)
    assert matcher.decisive is not None
    assert (matcher.decisive.kind, matcher.decisive.cause) == ("fail", "vmm-allocation")
    assert matcher.decisive.line == "ram_ut_alloc_iterator@guest_ram.c:304 Failed to allocate page"
    assert matcher.decisive.rule == "vmm-failed-allocate-page"
    assert list(matcher.milestones) == ["elf-loader", "sel4-booted", "vmm-started"]
    assert [n.rule for n in matcher.notes] == ["untyped-retype-insufficient"]
    assert matcher.notes[0].line.startswith("<<seL4(CPU 0) [decodeUntypedInvocation/204")


def test_pass_excerpt_passes_on_the_prompt_without_newline(rules: RuleSet) -> None:
    matcher = ConsoleMatcher(rules)
    for offset in range(len(PASS_EXCERPT) - 2):
        assert matcher.feed(PASS_EXCERPT[offset:offset + 1], float(offset)) is None
    decided = matcher.feed(b":", 99.0)  # decided as the colon arrives: no newline will follow
    assert decided is not None and decided.kind == "pass" and decided.line == "buildroot login:"
    assert matcher.milestones["login"] == 99.0
    assert list(matcher.milestones) == ["elf-loader", "sel4-booted", "vmm-started", "guest-linux", "login"]


def test_untyped_retype_note_alone_never_decides(rules: RuleSet) -> None:
    lines = FAIL_EXCERPT.split(b"\r\r\n")[:5]
    matcher = replay(rules, b"\r\r\n".join(lines) + b"\r\r\n")
    assert matcher.decisive is None
    assert [n.rule for n in matcher.notes] == ["untyped-retype-insufficient"]


@pytest.mark.parametrize(("line", "cause"), [
    ("Assertion failed: !err (/x/modules/init_ram.c: init_ram_module: 21)", "vmm-allocation"),
    ("map_vm_memory_reservation@guest_memory.c:477 Failed to get frame for reservation", "vmm-allocation"),
    ("vm_ram_touch@guest_ram.c:165 Failed to touch ram region: Not registered RAM region", "vmm-ram"),
    ("Pagefault from [vm0]: write fault @ PC: 0xffff0000083bd92c IPA: 0xbffff000", "vm-fault"),
    ("Assertion failed: rt >= 0 (/host/fault.c: fault_get_width: 620)", "assertion"),
    ("seL4 failed assertion 'foo' at bar.c:12 in function baz", "kernel-assertion"),
    ("KERNEL DATA ABORT!", "kernel-fault"),
    ("halting...", "kernel-halt"),
    ("Halting...", "kernel-halt"),
    ("[    3.1] Kernel panic - not syncing: VFS: Unable to mount root fs", "guest-panic"),
])
def test_failure_causes(rules: RuleSet, line: str, cause: str) -> None:
    matcher = replay(rules, f"Booting all finished, dropped to user space\r\n{line}\r\n".encode())
    assert matcher.decisive is not None and matcher.decisive.kind == "fail"
    assert matcher.decisive.cause == cause


def test_first_decisive_line_wins(rules: RuleSet) -> None:
    matcher = replay(rules, b"Pagefault from [vm0]\r\nbuildroot login: ")
    assert matcher.decisive is not None and matcher.decisive.cause == "vm-fault"


def test_non_partial_rule_waits_for_the_line_or_a_quiet_spell(rules: RuleSet) -> None:
    matcher = ConsoleMatcher(rules)
    assert matcher.feed(b"Assertion failed: !err (/x/init_ram.c", 1.0) is None
    assert matcher.feed(b": init_ram_module: 21)", 1.1) is None
    decided = matcher.judge_partial(1.4)
    assert decided is not None and decided.cause == "vmm-allocation"
    assert matcher.feed(b"\r\n", 1.5) is None  # judged once, not again at the line end


def test_user_rules_come_first_and_can_ignore_or_pass(tmp_path: Path) -> None:
    path = write(tmp_path, """
[[rule]]
name = "benign-assert"
kind = "ignore"
regex = 'Assertion failed: .*harmless'

[[rule]]
name = "my-test-done"
kind = "pass"
match = "ALL TESTS PASSED"
milestone = "tests-done"
""")
    ruleset = rules_for("qemu-arm-virt", [path])
    assert ruleset.sources[0] == str(path)
    matcher = replay(ruleset, b"Assertion failed: harmless thing\r\nALL TESTS PASSED\r\n")
    assert matcher.decisive is not None and matcher.decisive.rule == "my-test-done"
    assert "tests-done" in matcher.milestones


def test_fail_rule_without_cause_is_named_after_itself(tmp_path: Path) -> None:
    ruleset = load_rules(write(tmp_path, '[[rule]]\nname = "oops"\nkind = "fail"\nmatch = "OOPS"\n'))
    assert ruleset.rules[0].cause == "oops"


@pytest.mark.parametrize(("text", "message"), [
    ('[[rule]]\nkind = "fail"\nmatch = "x"\n', "mine.toml: rule #1: missing 'name'"),
    ('[[rule]]\nname = 7\nkind = "fail"\nmatch = "x"\n', "mine.toml: rule #1: missing 'name'"),
    ('[[rule]]\nname = "a"\nkind = "maybe"\nmatch = "x"\n',
     "mine.toml: rule 'a': kind must be one of pass, fail, note, milestone, ignore, not 'maybe'"),
    ('[[rule]]\nname = "a"\nkind = "fail"\n', "rule 'a': give exactly one of 'match'"),
    ('[[rule]]\nname = "a"\nkind = "fail"\nregex = "("\n', "rule 'a': bad regex"),
    ('[[rule]]\nname = "a"\nkind = "fail"\nmatch = "x"\ncolour = 1\nsize = 2\n',
     "unknown key\\(s\\) colour, size"),
    ('rule = "x"\n', r"mine.toml: 'rule' must be an array of tables \(\[\[rule\]\]\)"),
    ("[[rule]\n", "mine.toml: not valid TOML"),
])
def test_bad_rule_files_name_the_file_and_rule(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_rules(write(tmp_path, text))


def test_a_partial_rule_decides_on_a_prompt_that_never_ends_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[[rule]]\nname = "shell"\nkind = "pass"\nmatch = "my-board$ "\npartial = true\n'
                           '[[rule]]\nname = "late"\nkind = "fail"\nmatch = "my-board$ "\n')
    assert [r.partial for r in load_rules(path).rules] == [True, False]
    matcher = ConsoleMatcher(load_rules(path))
    decided = matcher.feed(b"booted\r\nmy-board$ ", 2.0)
    assert decided is not None and decided.rule == "shell"


def test_the_boot_milestone_comes_from_the_rule_file(tmp_path: Path) -> None:
    milestone = '[[rule]]\nname = "up"\nkind = "milestone"\nmatch = "kernel up"\nmilestone = "%s"\n'
    mine = load_rules(write(tmp_path, 'boot_milestone = "kernel-up"\n' + milestone % "kernel-up"))
    assert mine.boot_milestone == "kernel-up"
    assert replay(mine, b"kernel up\r\n").booted
    legacy_text = '[platform]\nboot_milestone = "kernel-up"\n' + milestone % "kernel-up"
    legacy = load_rules(write(tmp_path, legacy_text))
    assert legacy.boot_milestone == "kernel-up"  # rule files of older orch versions
    default = load_rules(write(tmp_path, milestone % "sel4-booted"))
    assert default.boot_milestone == "sel4-booted" and replay(default, b"kernel up\n").booted
    assert not replay(default, b"something else\n").booted
    assert load_rules(write(tmp_path, 'boot_milestone = "x"\n')).rules == ()  # no rules at all


def test_an_unknown_platform_is_named() -> None:
    with pytest.raises(InputError, match="unknown platform 'no-such-board'"):
        rules_for("no-such-board")


def test_guest_memory_from_free_and_meminfo_either_or_both() -> None:
    both = parse_guest_memory(SESSION_EXCERPT.decode())
    assert both is not None and both.total_mib == 1983 and both.meminfo_kb["MemTotal"] == 2030616
    only_meminfo = parse_guest_memory("# cat /proc/meminfo\r\nMemTotal:        2030616 kB\r\n")
    assert only_meminfo is not None and only_meminfo.total_mib is None
    assert only_meminfo.meminfo_kb == {"MemTotal": 2030616}
    only_free = parse_guest_memory("       total  used  free\nMem:    10     2     8\n")
    assert only_free is not None and (only_free.total_mib, only_free.free_mib) == (10, 8)
    assert only_free.meminfo_kb == {}
    assert parse_guest_memory("# \r\nbuildroot login: ") is None


def test_a_garbled_free_row_does_not_hide_a_later_table() -> None:
    text = ("              total        used        free\r\n"
            "Mem:           1983          2\r\n"  # the serial line dropped bytes
            "# free -m\r              total        used        free\r"
            "Mem:           1983          26        1954\r\n")  # lone CRs end lines too
    free = parse_free(text)
    assert free is not None and (free.total_mib, free.used_mib, free.free_mib) == (1983, 26, 1954)


def test_a_replay_times_each_verdict_by_the_byte_offset_that_decided_it(tmp_path: Path) -> None:
    rule = '[[rule]]\nname = "done"\nkind = "pass"\nmatch = "ALL TESTS PASSED"\n'
    ruleset = load_rules(write(tmp_path, rule))
    data = b"xy\r\nALL TESTS PASSED\r\n"  # the line ends with the byte at offset 21
    decided = replay(ruleset, data).decisive
    assert decided is not None and decided.time == 21.0 and decided.line_number == 2
    unfinished = replay(ruleset, b"boot\nALL TESTS PASSED").decisive  # judged when the console ends
    assert unfinished is not None and unfinished.time == 21.0


def test_missing_rule_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="rule file not found"):
        load_rules(tmp_path / "absent.toml")


def test_session_excerpt_parses_memory() -> None:
    text = SESSION_EXCERPT.decode()
    free = parse_free(text)
    assert free is not None
    assert (free.total_mib, free.used_mib, free.free_mib, free.shared_mib, free.buff_cache_mib,
            free.available_mib) == (
        1983, 26, 1954, 1, 1, 1925)
    assert parse_meminfo(text) == {"MemTotal": 2030616, "MemFree": 2001144, "MemAvailable": 1971360}


def test_parse_free_old_procps_and_garbage() -> None:
    old = ("             total       used       free     shared    buffers     cached\n"
           "Mem:          2001         10       1990          1          0          1\n"
           "-/+ buffers/cache:          9       1992\n")
    free = parse_free(old)
    assert free is not None and (free.total_mib, free.buff_cache_mib, free.available_mib) == (2001, 0, None)
    assert parse_free("Mem: lots\n") is None
    assert parse_meminfo("x1: 0x0\nHugePages_Total:       0\n") == {"HugePages_Total": 0}


@pytest.mark.parametrize(("name", "verdict", "cause"), [
    ("vm_minimal-qemu-arm-virt-2g-4k-fail.log", "fail", "vmm-allocation"),
    ("vm_minimal-qemu-arm-virt-2g-largepage-pass.log", "pass", None),
])
def test_replay_real_consoles(rules: RuleSet, name: str, verdict: str, cause: str | None) -> None:
    path = shared_data(f"consoles/{name}")
    data = path.read_bytes()
    matcher = replay(rules, data)
    assert matcher.decisive is not None
    assert (matcher.decisive.kind, matcher.decisive.cause) == (verdict, cause)
    assert matcher.booted
    if verdict == "pass":
        free = parse_free(data.decode())
        assert free is not None and free.total_mib == 1983
        assert parse_meminfo(data.decode())["MemTotal"] == 2030616
        assert "guest-linux" in matcher.milestones


# --------------------------------------------------------------------------- long lines


def test_a_megabyte_line_without_newline_then_the_fail_line(rules: RuleSet) -> None:
    matcher = ConsoleMatcher(rules)
    junk = b"x" * 65536
    for _ in range(48):  # 3 MiB of one line, in QEMU-sized reads
        assert matcher.feed(junk, 0.0) is None
    decided = matcher.feed(b"\r\nram_ut_alloc_iterator@guest_ram.c:304 Failed to allocate page\r\n", 1.0)
    assert decided is not None and decided.cause == "vmm-allocation" and decided.time == 1.0
    assert decided.line.startswith("ram_ut_alloc_iterator")


def test_a_fail_text_at_the_end_of_a_huge_line_is_found(rules: RuleSet) -> None:
    matcher = ConsoleMatcher(rules)
    for _ in range(40):
        matcher.feed(b"y" * 65536, 0.0)
    decided = matcher.feed(b" Failed to allocate page\n", 2.0)
    assert decided is not None and decided.cause == "vmm-allocation"
    assert len(decided.line) <= 401  # the report shows the line's end, not megabytes


def test_matching_work_is_linear_in_the_bytes_fed(rules: RuleSet, monkeypatch: pytest.MonkeyPatch) -> None:
    """Count the characters the rules are run over: bounded by a constant per byte fed, however
    long the line (the old matcher re-read the whole unfinished line on every read)."""
    import orchestrator.boot.console as console

    seen = [0]
    real = console.strip_ansi

    def counting(text: str) -> str:
        seen[0] += len(text)
        return real(text)

    monkeypatch.setattr(console, "strip_ansi", counting)
    matcher = ConsoleMatcher(rules)
    fed = 0
    for _ in range(256):  # 4 MiB, one line, 16 KiB at a time
        chunk = b"z" * 16384
        matcher.feed(chunk, 0.0)
        fed += len(chunk)
    matcher.feed(b"\n", 0.0)
    assert seen[0] <= 3 * fed
    assert matcher.line_number == 2


def test_a_prompt_after_a_long_line_is_still_seen(rules: RuleSet) -> None:
    matcher = ConsoleMatcher(rules)
    matcher.feed(b"q" * (3 << 20), 0.0)
    decided = matcher.feed(b"buildroot login: ", 1.0)
    assert decided is not None and decided.kind == "pass"
