"""The one filter for text that came from outside orch (patch subjects, guest consoles, git's
and Docker's output, manifest strings) on its way to a terminal.

What passes: printable characters, newlines and tabs, and -- where asked for -- SGR colour
sequences (``ESC [ ... m``). Everything else a terminal would act on is dropped: other CSI
sequences (cursor moves, clear screen), OSC (window title, clipboard writes: OSC 52), DCS,
APC/PM/SOS strings, two-byte ESC sequences, C0 and C1 control characters, carriage returns
that could overwrite a line. The raw bytes stay in the log files; only what is shown is
filtered. :class:`StreamSanitizer` does the same for text arriving in pieces (a console),
holding back a sequence split across pieces.
"""

from __future__ import annotations

import re

# an escape sequence or string, complete: CSI, OSC/DCS/SOS/PM/APC (ended by BEL or ST),
# a two-byte ESC sequence
_SEQUENCE = (
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)"
    r"|\x9b[0-?]*[ -/]*[@-~]"
    r"|[\x90\x9d\x98\x9e\x9f][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)"
    r"|\x1b[ -/]*[0-~]"
    r"|(?:\x1b[\]PX^_]|[\x90\x9d\x98\x9e\x9f])[^\x07\x1b\x9c]*\Z"  # a string never ended: to the end
)
_SGR = re.compile(r"\x1b\[[0-9;:]*m")
# a sequence, or a lone control: ESC, C0 (except tab and newline), DEL, C1
_UNSAFE = re.compile(_SEQUENCE + r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# an unfinished sequence at the end of a piece
_UNFINISHED = re.compile(r"(?:\x1b(?:\[[0-?]*[ -/]*|[\]PX^_][^\x07\x1b]*\x1b?|[ -/]*)?"
                         r"|\x9b[0-?]*[ -/]*|[\x90\x9d\x98\x9e\x9f][^\x07\x1b\x9c]*\x1b?)\Z")
MAX_HELD = 65536


def _keep_sgr(match: re.Match[str]) -> str:
    return match.group(0) if _SGR.fullmatch(match.group(0)) else ""


def terminal_text(text: str, *, sgr: bool = False) -> str:
    """``text`` safe to print: printable text, newlines, tabs (and SGR colours with ``sgr``)."""
    return _UNSAFE.sub(_keep_sgr if sgr else _drop, text.replace("\r\n", "\n"))


def _drop(_match: re.Match[str]) -> str:
    return ""


def terminal_bytes(data: bytes, *, sgr: bool = False) -> str:
    """Raw bytes (invalid UTF-8 replaced) as :func:`terminal_text`."""
    return terminal_text(data.decode("utf-8", errors="replace"), sgr=sgr)


class StreamSanitizer:
    """:func:`terminal_text` for text that arrives in pieces: a sequence cut at the end of one
    piece is held back and judged whole with the next (up to :data:`MAX_HELD` characters,
    then dropped)."""

    def __init__(self, *, sgr: bool = False) -> None:
        self.sgr = sgr
        self._held = ""

    def feed(self, text: str) -> str:
        text = self._held + text
        self._held = ""
        cut = _UNFINISHED.search(text)
        if cut is not None and cut.start() < len(text):
            held = text[cut.start():]
            self._held = held if len(held) <= MAX_HELD else ""
            text = text[:cut.start()]
        if text.endswith("\r"):  # maybe the first half of CRLF
            self._held = "\r" + self._held
            text = text[:-1]
        return terminal_text(text, sgr=self.sgr)

    def finish(self) -> str:
        held, self._held = self._held, ""
        return terminal_text(held, sgr=self.sgr)


_XML_UNSAFE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def xml_for_terminal(xml: str) -> str:
    """An XML document safe to print that still means the same: control characters (C1 ones
    such as CSI 0x9b are legal in XML 1.0 manifests) become character references (``&#155;``).
    They can only stand in text and attribute values, where a reference is equivalent."""
    return _XML_UNSAFE.sub(lambda m: f"&#{ord(m.group(0))};", xml)
