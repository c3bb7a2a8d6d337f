"""Text from outside reaches the terminal as printable text (and SGR colour at most)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from orchestrator.boot.qemu import _Observer
from orchestrator.cli import main
from orchestrator.sanitize import StreamSanitizer, terminal_text
from orchestrator.ui import UI
from tests.test_patchset import make_patchset, simple_patch

OSC52 = "\x1b]52;c;SGVsbG8gY2xpcGJvYXJk\x07"
OSC0_ST = "\x1b]0;pwned title\x1b\\"
HOSTILE = f"a{OSC52}b{OSC0_ST}c\x1b[2Jd\x1b[31me\x1b[0mf\x1bcg\x9b2Jh\x07i\x08j\rk\x00l"


def test_only_printable_text_is_left() -> None:
    assert terminal_text(HOSTILE) == "abcdefghijkl"


def test_sgr_colour_may_stay() -> None:
    assert terminal_text(HOSTILE, sgr=True) == "abcd\x1b[31me\x1b[0mfghijkl"


def test_newlines_and_tabs_stay_and_crlf_becomes_lf() -> None:
    assert terminal_text("x\ty\r\nz\n") == "x\ty\nz\n"


@pytest.mark.parametrize("cut", range(1, len(HOSTILE)))
def test_a_sequence_split_across_pieces_is_still_dropped(cut: int) -> None:
    stream = StreamSanitizer(sgr=True)
    shown = stream.feed(HOSTILE[:cut]) + stream.feed(HOSTILE[cut:]) + stream.finish()
    assert shown == "abcd\x1b[31me\x1b[0mfghijkl"


def test_an_unterminated_osc_is_never_shown() -> None:
    stream = StreamSanitizer()
    shown = stream.feed("ok \x1b]52;c;" + "A" * 100) + stream.feed("B" * 100) + stream.finish()
    assert "\x1b" not in shown and "\x07" not in shown and shown.startswith("ok ")


def test_run_verbose_streams_the_console_sanitized() -> None:
    buffer = io.StringIO()
    ui = UI(out=Console(file=io.StringIO()), err=Console(file=buffer), verbose=True)
    observer = _Observer(ui, "test")
    data = f"boot {OSC52} \x1b[32mok\x1b[0m {OSC0_ST}\x1b[H\x1b[2J done\r\n".encode()
    for i in range(0, len(data), 5):
        observer.console(data[i:i + 5])
    assert buffer.getvalue() == "boot  \x1b[32mok\x1b[0m  done\n"


def test_patchset_show_prints_a_hostile_subject_as_text(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    patch = simple_patch("a.txt", "x", "y").replace(
        "Subject: [PATCH] x: y", f"Subject: [PATCH] evil {OSC52}{OSC0_ST}[/x] [bold]subject")
    make_patchset(tmp_path, "hostile", {"kernel": {"0001-evil.patch": patch}})
    code = main(["patchset", "show", "hostile", "--patchsets", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "\x1b" not in out and "\x07" not in out
    assert "evil [/x] [bold]subject" in out.replace("\n", " ").replace("│", " ").replace("  ", " ")


def test_errors_with_outside_text_are_printed_as_text(capsys: pytest.CaptureFixture[str]) -> None:
    from orchestrator.errors import InputError

    UI.create(color=False).error(InputError(f"bad {OSC52}[/x] thing", hint="[red]hint\x1b[2J"))
    err = capsys.readouterr().err
    assert "\x1b" not in err and "bad [/x] thing" in err and "hint: [red]hint" in err


# --------------------------------------------------------------------------- the audit's paths

LINK = "[link=https://evil.example/x]click[/link]"
RAW = ("\x1b]52", "\x1b]0;", "\x1b]8;", "\x1b[2J", "\x9b", "\x07", "\x1bc")


def _terminal_output(renderable: object) -> str:
    """What a colour terminal would receive for ``renderable`` from orch's console."""
    buffer = io.StringIO()
    ui = UI.create()
    console = type(ui.out)(file=buffer, force_terminal=True, color_system="truecolor", width=400,
                           highlight=False)
    console.print(renderable)
    return buffer.getvalue()


def _assert_clean(text: str) -> None:
    for sequence in RAW:
        assert sequence not in text, (sequence, text)


def test_outside_markup_in_a_cell_never_becomes_a_hyperlink_or_a_crash() -> None:
    from rich.table import Table

    table = Table("a")
    table.add_row(f"{LINK} {HOSTILE} [/unbalanced]")
    out = _terminal_output(table)
    _assert_clean(out)
    assert "click" in out and "[/unbalanced]" in out


def test_upstream_tables_show_subjects_and_api_urls_as_text() -> None:
    from orchestrator.upstream import opener, prepare

    conflict = prepare.Conflict(f"kernel{OSC52}", "a" * 40, f"evil {LINK} {HOSTILE}", "ps", "0001.patch",
                                [f"f{OSC0_ST}.c"], "b" * 40)
    out = _terminal_output(prepare.result_table(prepare.PrepareResult("ps", conflicts=[conflict])))
    _assert_clean(out)
    assert "evil [link=https://evil.example/x]click[/link] a" in out
    pulls = opener.OpenResult("ps", False, [opener.OpenedPull(
        "kernel", "seL4/seL4", 7, f"https://github.com/x{OSC52}{LINK}", f"created{HOSTILE}")])
    out = _terminal_output(opener.result_table(pulls))
    _assert_clean(out)
    assert "[link=" in out


def test_bisect_answer_lines_show_outside_text_as_text() -> None:
    from orchestrator.bisect.record import BisectRecord, Culprit
    from orchestrator.cli.bisect import answer_lines

    record = BisectRecord("ps", "v", "good", "bad")
    record.culprit = Culprit(f"kernel{LINK}", "c" * 40, f"subject {HOSTILE}", f"Eve {OSC52}", "2026-01-01",
                             url=f"https://github.com/{LINK}")
    out = "".join(_terminal_output(line) for line in answer_lines(record))
    _assert_clean(out)
    assert "[link=" in out


def test_bisect_log_is_printed_sanitized(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from orchestrator import layout

    latest = layout.bisect_dir(tmp_path) / layout.LATEST
    latest.mkdir(parents=True)
    (latest / "bisect.log").write_text(f"git bisect start\n# bad: [abc] subject {HOSTILE}\n")
    assert main(["bisect", "--log", "-w", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    _assert_clean(out)
    assert "# bad: [abc] subject a" in out and "git bisect start\n" in out


def test_manifest_xml_on_stdout_has_no_control_characters_and_means_the_same() -> None:
    import xml.etree.ElementTree as ET

    from orchestrator.sanitize import xml_for_terminal

    element = ET.Element("project", name="evil\x9b2J\x85name\x7f", path="a")
    xml = ET.tostring(element, encoding="unicode")
    safe = xml_for_terminal(xml)
    _assert_clean(safe)
    assert not any(0x7f <= ord(c) <= 0x9f for c in safe)
    assert ET.fromstring(safe).attrib == element.attrib
