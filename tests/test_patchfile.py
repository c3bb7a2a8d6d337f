"""patchset/patchfile.py on its own: text in, records out (no git, no files but one)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.errors import InputError
from orchestrator.patchset.patchfile import (
    FileChange,
    commit_message,
    format_mail,
    parse_diff,
    parse_patch_file,
    parse_patch_text,
    patch_file_name,
    same_patch,
    split_repo_diff,
)

DIFF = """diff --git a/libsel4vm/src/guest_ram.c b/libsel4vm/src/guest_ram.c
index 1111111..2222222 100644
--- a/libsel4vm/src/guest_ram.c
+++ b/libsel4vm/src/guest_ram.c
@@ -10,4 +10,4 @@ static vm_frame_t ram_ut_alloc_iterator(uintptr_t addr, void *cookie)
 {
-    int page_size = seL4_PageBits;
+    int page_size = seL4_LargePageBits;
     uintptr_t frame_start = ROUND_DOWN(addr, BIT(page_size));
     return frame_start;
"""

NEW_FILE = """diff --git a/docs/NOTES b/docs/NOTES
new file mode 100644
index 0000000..3333333
--- /dev/null
+++ b/docs/NOTES
@@ -0,0 +1,2 @@
+first
+second
"""

MAIL = f"""From 0123456789abcdef0123456789abcdef01234567 Mon Sep 17 00:00:00 2001
From: Jane Dev <jane@example.org>
Date: Mon, 1 Jan 2024 00:00:00 +0000
Subject: [PATCH 1/2] libsel4vm: map guest RAM
 with 2 MiB frames

Fewer frames, less allocator metadata.

Signed-off-by: Jane Dev <jane@example.org>
---
 libsel4vm/src/guest_ram.c | 2 +-

{DIFF}--
2.39.2
"""


def test_a_hunk_becomes_a_record() -> None:
    [change] = parse_diff(DIFF, "p")
    assert (change.source, change.target, change.path) == (
        "libsel4vm/src/guest_ram.c", "libsel4vm/src/guest_ram.c", "libsel4vm/src/guest_ram.c")
    [hunk] = change.hunks
    assert hunk.header.startswith("@@ -10,4 +10,4 @@")
    assert (hunk.source_start, hunk.source_length) == (10, 4)
    assert hunk.before == ("{", "    int page_size = seL4_PageBits;",
                           "    uintptr_t frame_start = ROUND_DOWN(addr, BIT(page_size));",
                           "    return frame_start;")
    assert hunk.after[1] == "    int page_size = seL4_LargePageBits;"
    assert (hunk.leading_context, hunk.trailing_context) == (1, 2)


def test_new_and_deleted_files() -> None:
    [new] = parse_diff(NEW_FILE, "p")
    assert new == FileChange(None, "docs/NOTES", new.hunks)
    assert new.hunks[0].after == ("first", "second")
    deleted = """diff --git a/docs/NOTES b/docs/NOTES
deleted file mode 100644
index 3333333..0000000
--- a/docs/NOTES
+++ /dev/null
@@ -1,2 +0,0 @@
-first
-second
"""
    [gone] = parse_diff(deleted, "p")
    assert (gone.source, gone.target, gone.path) == ("docs/NOTES", None, "docs/NOTES")


def test_mail_headers() -> None:
    patch = parse_patch_text(MAIL, "0001.patch")
    assert patch.subject == "libsel4vm: map guest RAM with 2 MiB frames"  # [PATCH n/m] and folding gone
    assert patch.author == "Jane Dev <jane@example.org>"
    assert [c.path for c in patch.changes] == ["libsel4vm/src/guest_ram.c"]
    message = commit_message(MAIL)
    assert message.startswith("Fewer frames") and message.endswith("<jane@example.org>")
    bare = parse_patch_text(DIFF, "bare.diff")
    assert (bare.subject, bare.author) == ("", "") and bare.changes == patch.changes


@pytest.mark.parametrize(("text", "error"), [
    ("just prose\n", "no diff found"),
    (DIFF.replace("libsel4vm/src/guest_ram.c", "../escape.c"), "escape.c"),
    (DIFF.replace("libsel4vm/src/guest_ram.c", "/abs/guest_ram.c"), "abs/guest_ram.c"),
    ("diff --git a/x b/x\nGIT binary patch\nliteral 3\n", "binary diffs are not supported"),
])
def test_bad_patches_are_one_line_naming_the_file(text: str, error: str) -> None:
    with pytest.raises(InputError, match=r"^bad\.patch: ") as caught:
        parse_patch_text(text, "bad.patch")
    assert error in caught.value.message and "\n" not in caught.value.message


def test_same_patch_ignores_headers_that_do_not_matter() -> None:
    other_sha = MAIL.replace("0123456789abcdef", "fedcba9876543210").replace("2.39.2", "2.45.0")
    assert same_patch(MAIL, other_sha)
    assert not same_patch(MAIL, MAIL.replace("Fewer frames", "Fewer pages"))
    assert not same_patch(MAIL, MAIL.replace("seL4_LargePageBits", "seL4_HugePageBits"))
    assert not same_patch(MAIL, "garbage")


def test_repo_diff_sections() -> None:
    text = (f"Some prose first.\nproject projects/seL4_projects_libs/\n{DIFF}\n"
            f"project docs/\nchatter before the diff\n{NEW_FILE}trailing prose\n")
    sections = split_repo_diff(text, "out.txt")
    assert list(sections) == ["projects/seL4_projects_libs", "docs"]
    assert sections["docs"].startswith("diff --git a/docs/NOTES") and "trailing prose" not in sections["docs"]
    with pytest.raises(InputError, match="no 'project PATH/' header"):
        split_repo_diff(DIFF, "out.txt")
    with pytest.raises(InputError, match="appears twice"):
        split_repo_diff(f"project a/\n{DIFF}project a/\n{DIFF}", "out.txt")


def test_names_and_mails_round_trip(tmp_path: Path) -> None:
    assert patch_file_name(1, "libsel4vm: map guest RAM with 2 MiB frames") == (
        "0001-libsel4vm-map-guest-RAM-with-2-MiB-frames.patch")
    assert patch_file_name(12, "!!!") == "0012-patch.patch"
    mail = format_mail(DIFF, subject="s: x", body="Why.", author="A <a@x>",
                       date=datetime(2024, 1, 1, tzinfo=UTC))
    path = tmp_path / "0001-s-x.patch"
    path.write_text(mail)
    parsed = parse_patch_file(path)
    assert (parsed.label, parsed.subject, parsed.author) == ("0001-s-x.patch", "s: x", "A <a@x>")
    assert commit_message(mail) == "Why.\n\nSigned-off-by: A <a@x>"
    with pytest.raises(InputError, match="cannot read patch"):
        parse_patch_file(tmp_path / "missing.patch")
