"""Parity with `repo`'s manifest parser, case by case.

Each case is a small manifest written for this project, with the outcome `repo`
(GerritCodeReview/git-repo, manifest_xml.py) gives for it: "accepts" or "refuses". Where orch
is deliberately stricter the case says ``repo="accepts"`` and ``orch="refuses"``; the README's
"Differences from repo" lists the same cases.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from orchestrator.errors import InputError
from orchestrator.workspace.manifest import Manifest, load_manifest

HEAD = '<remote name="origin" fetch="https://example.org/git"/>\n<default remote="origin" revision="main"/>\n'


def xml_attr(value: str) -> str:
    """``value`` as an XML attribute body, newlines kept (as character references)."""
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("\n", "&#10;").replace("\r", "&#13;")


@dataclass
class Case:
    body: str  # inside <manifest> after HEAD
    repo: str  # what repo does: "accepts" | "refuses"
    orch: str = ""  # what orch does, when deliberately different
    extra: dict[str, str] = field(default_factory=dict)  # other files of the manifest repository
    head: str = HEAD

    @property
    def expected(self) -> str:
        return self.orch or self.repo


def load(tmp_path: Path, case: Case) -> Manifest:
    root = tmp_path / "manifests"
    root.mkdir(exist_ok=True)
    for name, text in case.extra.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "default.xml").write_text(f"<manifest>\n{case.head}{case.body}\n</manifest>\n")
    return load_manifest(root / "default.xml")


def outcome(tmp_path: Path, case: Case) -> str:
    try:
        load(tmp_path, case)
    except InputError as error:
        assert "\n" not in error.message and "\r" not in error.message, "errors are one line"
        return "refuses"
    return "accepts"


def project(name: str = "p", path: str | None = None, inner: str = "") -> str:
    attrs = f'name="{xml_attr(name)}"' + (f' path="{xml_attr(path)}"' if path is not None else "")
    return f"<project {attrs}>{inner}</project>"


# --- 1. names are checked like paths ---------------------------------------------------------

BAD_NAMES = [".", "..", "../foo", "/foo", "foo/../../bar", ".git/foo", ".repo/foo", "~", "foo~",
             "a\nb", "a\rb", "x/.GIT/y", "foo\u200dbar", "./foo", "foo/./bar"]
GOOD_NAMES = ["foo", "a/b", "a/path/", "seL4.git", "foo.bar-baz_1"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_unsafe_project_names_are_refused(tmp_path: Path, name: str) -> None:
    assert outcome(tmp_path, Case(project(name, path="ok"), repo="refuses")) == "refuses"


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_ordinary_project_names_are_accepted(tmp_path: Path, name: str) -> None:
    assert outcome(tmp_path, Case(project(name, path="ok"), repo="accepts")) == "accepts"


def test_a_name_with_a_newline_is_reported_on_one_line(tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc:
        load(tmp_path, Case(project("evil\nname", path="ok"), repo="refuses"))
    assert "\n" not in exc.value.message
    assert 'invalid name "evil\\nname": newlines not allowed' in exc.value.message


# --- 2. paths unsafe on some filesystems -----------------------------------------------------

UNSAFE_PATHS = [".GIT/hooks", "x/.Git/hooks", ".repoconfig", "a/.Repo/b", ".g\u200cit", "a\u202eb",
                "x\ufeff", "f\n/bar", "f\r/bar", "foo~", "blah/foo~", "~", "..", "../x", "/abs",
                "a/../../b", "./a", "a/./b"]


@pytest.mark.parametrize("path", UNSAFE_PATHS)
def test_unsafe_project_paths_are_refused(tmp_path: Path, path: str) -> None:
    assert outcome(tmp_path, Case(project(path=path), repo="refuses")) == "refuses"


@pytest.mark.parametrize("path", UNSAFE_PATHS)
@pytest.mark.parametrize("tag", ["linkfile", "copyfile"])
@pytest.mark.parametrize("attr", ["src", "dest"])
def test_unsafe_linkfile_and_copyfile_paths_are_refused(tmp_path: Path, path: str, tag: str,
                                                        attr: str) -> None:
    other = "dest" if attr == "src" else "src"
    inner = f'<{tag} {attr}="{xml_attr(path)}" {other}="ok"/>'
    assert outcome(tmp_path, Case(project(inner=inner), repo="refuses")) == "refuses"


@pytest.mark.parametrize(("tag", "src", "dest", "repo"), [
    ("linkfile", ".", "link-to-project", "accepts"),  # a stable link to the project itself
    ("linkfile", "dir/", "d", "accepts"),  # a symlink may point at a directory
    ("copyfile", "dir/", "d", "refuses"),  # a copy is of a file
    ("linkfile", "a", "d/", "refuses"),
    ("copyfile", ".", "d", "refuses"),
    ("linkfile", "", "d", "refuses"),
])
def test_linkfile_and_copyfile_edge_cases(tmp_path: Path, tag: str, src: str, dest: str, repo: str) -> None:
    inner = f'<{tag} src="{src}" dest="{dest}"/>'
    assert outcome(tmp_path, Case(project(inner=inner), repo=repo)) == repo


def test_trailing_slashes_in_a_path_are_dropped(tmp_path: Path) -> None:
    m = load(tmp_path, Case(project("a/path", path="foo//"), repo="accepts"))
    assert m.projects[0].path == "foo"


# --- 3. include revision= and groups=, group precedence --------------------------------------


INCLUDES = {
    "stable.xml": '<manifest><include name="inner.xml"/><include name="pinned.xml" revision="v2"/>'
                  '<project name="s1"/><project name="s2" revision="own"/></manifest>',
    "inner.xml": '<manifest><project name="i1"/><project name="i2" revision="own"/></manifest>',
    "pinned.xml": '<manifest><project name="p1"/></manifest>',
}


def test_include_revision_is_inherited_by_what_it_includes(tmp_path: Path) -> None:
    case = Case('<include name="stable.xml" revision="stable"/><project name="top"/>', repo="accepts",
                extra=INCLUDES)
    revisions = {p.name: p.revision for p in load(tmp_path, case).projects}
    assert revisions == {"s1": "stable", "s2": "own", "i1": "stable", "i2": "own", "p1": "v2", "top": "main"}


def test_include_groups_are_added_to_included_projects_and_extend_projects(tmp_path: Path) -> None:
    extra = {
        "one.xml": '<manifest><include name="two.xml" groups="g2"/><project name="a"/></manifest>',
        "two.xml": '<manifest><project name="b" groups="own"/></manifest>',
        "ext.xml": '<manifest><extend-project name="top" groups="e"/></manifest>',
    }
    case = Case('<project name="top"/><include name="one.xml" groups="g1"/>'
                '<include name="ext.xml" groups="from-ext,local:x"/>', repo="accepts", extra=extra)
    groups = {p.name: set(p.groups) for p in load(tmp_path, case).projects}
    assert groups == {"top": {"e", "from-ext"}, "a": {"g1"}, "b": {"g1", "g2", "own"}}


GROUPED = ('<project name="k" groups="sel4"/><project name="t" groups="tools,notdefault"/>'
           '<project name="x" groups="sel4,extra"/><project name="plain"/>')


@pytest.mark.parametrize(("selection", "repo_selects"), [
    ("default", {"k", "x", "plain"}),
    ("-sel4,default", {"k", "x", "plain"}),  # the last entry that names a group decides
    ("default,-sel4", {"plain"}),
    ("all,-extra", {"k", "t", "plain"}),
    ("-extra,all", {"k", "t", "x", "plain"}),
    ("tools", {"t"}),
    ("-sel4", set()),  # nothing selects
    ("sel4,-name:x", {"k"}),
    ("path:plain", {"plain"}),
    ("", {"k", "x", "plain"}),
])
def test_group_selection_follows_repo(tmp_path: Path, selection: str, repo_selects: set[str]) -> None:
    m = load(tmp_path, Case(GROUPED, repo="accepts"))
    groups = [g for g in selection.split(",") if g]
    assert {p.name for p in m.select_groups(groups).projects} == repo_selects


# --- 4. base-rev -----------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "repo"), [
    ('<project name="a" revision="r1"/><extend-project name="a" revision="r2" base-rev="r1"/>', "accepts"),
    ('<project name="a" revision="r1"/><extend-project name="a" revision="r2" base-rev="old"/>', "refuses"),
    ('<project name="a"/><extend-project name="a" revision="r2" base-rev="anything"/>', "refuses"),
    ('<project name="a" revision="r1"/><extend-project name="a" groups="g" base-rev="old"/>', "accepts"),
    ('<project name="a" revision="r1"/><remove-project name="a" base-rev="r1"/>', "accepts"),
    ('<project name="a" revision="r1"/><remove-project name="a" base-rev="old"/>', "refuses"),
    ('<project name="a" path="x" revision="r1"/><remove-project path="x" base-rev="old"/>', "refuses"),
    ('<project name="a" revision="r1"/><extend-project name="a" revision="r2" base-rev="r1"/>'
     '<extend-project name="a" revision="r3" base-rev="r2"/>', "accepts"),
])
def test_base_rev_guards_against_stale_local_changes(tmp_path: Path, body: str, repo: str) -> None:
    assert outcome(tmp_path, Case(body, repo=repo)) == repo


def test_base_rev_message_names_the_element_and_both_revisions(tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc:
        load(tmp_path, Case('<project name="a" revision="r1"/><extend-project name="a" revision="r2" '
                            'base-rev="old"/>', repo="refuses"))
    assert '<extend-project name="a">: base-rev old but the project is at r1' in exc.value.message


# --- 5. attributes that change a checkout; notice; unknown elements --------------------------


@pytest.mark.parametrize(("attrs", "repo"), [
    ('clone-depth="1"', "accepts"), ('clone-depth="50"', "accepts"), ('clone-depth="0"', "refuses"),
    ('clone-depth="-1"', "refuses"), ('clone-depth="deep"', "refuses"), ('clone-depth=""', "accepts"),
    ('sync-s="true"', "accepts"), ('sync-s="maybe"', "accepts"),  # an invalid boolean is a warning
])
def test_project_attributes(tmp_path: Path, attrs: str, repo: str) -> None:
    assert outcome(tmp_path, Case(f'<project name="a" {attrs}/>', repo=repo)) == repo


def test_clone_depth_and_sync_flags_reach_the_project_with_defaults(tmp_path: Path) -> None:
    head = ('<remote name="origin" fetch="https://example.org/git"/>'
            '<default remote="origin" revision="main" sync-s="true" sync-c="true" sync-tags="false"/>')
    body = ('<project name="a" clone-depth="3"/><project name="b" sync-s="no" sync-tags="yes"/>'
            '<project name="c" sync-s="bogus"/>')
    m = load(tmp_path, Case(body, repo="accepts", head=head))
    a, b, c = m.projects
    assert (a.clone_depth, a.sync_s, a.sync_c, a.sync_tags) == (3, True, True, False)
    assert (b.clone_depth, b.sync_s, b.sync_c, b.sync_tags) == (None, False, True, True)
    assert c.sync_s is True and any('sync-s="bogus"' in w for w in m.warnings)


def test_notice_is_kept_with_its_indentation_removed(tmp_path: Path) -> None:
    body = "<notice>\n      This manifest is for seL4.\n        Indented line.\n\n      Last.\n    </notice>"
    assert load(tmp_path, Case(body, repo="accepts")).notice == (
        "This manifest is for seL4.\n  Indented line.\n\nLast.")


def test_a_notice_reaches_the_terminal_without_control_characters(tmp_path: Path) -> None:
    # tabs and non-breaking spaces are text; DEL and the C1 controls (ESC's 8-bit twin) are not
    body = "<notice>Read\tme\u00a0first \u007f\u0085\u009bdone\u200d.</notice>"
    assert load(tmp_path, Case(body, repo="accepts")).notice == "Read\tme\u00a0first done."
    assert load(tmp_path, Case("<notice/>", repo="accepts")).notice == ""


def test_a_second_notice_is_refused(tmp_path: Path) -> None:
    assert outcome(tmp_path, Case("<notice>a</notice><notice>b</notice>", repo="refuses")) == "refuses"


def test_unknown_elements_are_ignored_with_a_warning(tmp_path: Path) -> None:
    body = ('<future-thing value="x"/><x-custom>text</x-custom>'
            '<project name="a"><annotation name="k" value="v"/><unheard-of/></project>')
    m = load(tmp_path, Case(body, repo="accepts"))
    assert [p.name for p in m.projects] == ["a"]
    assert len(m.warnings) == 3 and all("unknown element, ignored" in w for w in m.warnings)


@pytest.mark.parametrize(("body", "repo"), [
    ("<default/>", "accepts"),  # an empty second <default> is no conflict
    ('<default remote="origin" revision="other"/>', "refuses"),
    ('<default remote="origin" revision="main"/>', "accepts"),
    ('<remote name="origin" fetch="https://elsewhere.org"/>', "refuses"),
    ('<remote name="origin" fetch="https://example.org/git"/>', "accepts"),
])
def test_duplicate_remote_and_default(tmp_path: Path, body: str, repo: str) -> None:
    assert outcome(tmp_path, Case(body, repo=repo)) == repo


def test_sync_j_must_be_positive(tmp_path: Path) -> None:
    head = '<remote name="o" fetch="https://e.org"/><default remote="o" revision="m" sync-j="0"/>'
    assert outcome(tmp_path, Case("", repo="refuses", head=head)) == "refuses"


def test_an_element_may_use_a_remote_defined_after_it(tmp_path: Path) -> None:
    m = load(tmp_path, Case('<project name="a" remote="later"/><remote name="later" fetch="https://l.org" '
                            'revision="lr"/>', repo="accepts"))
    assert (m.projects[0].url, m.projects[0].revision) == ("https://l.org/a", "lr")


# --- remove-project / extend-project ---------------------------------------------------------


@pytest.mark.parametrize(("body", "repo"), [
    ('<project name="a" path="x"/><project name="a" path="y"/><remove-project name="a"/>', "accepts"),
    ('<project name="a" path="x"/><project name="a" path="y"/><remove-project name="a" path="x"/>',
     "accepts"),
    ('<project name="a" path="x"/><remove-project path="x"/>', "accepts"),
    ('<project name="a" path="x"/><remove-project name="b" path="x"/>', "refuses"),
    ('<remove-project name="gone" optional="true"/>', "accepts"),
    ("<remove-project/>", "refuses"),
    ('<project name="a" path="x"/><project name="b" path="x"/><remove-project path="x"/>', "refuses"),
    ('<project name="a" path="x"/><project name="a" path="y"/><extend-project name="a" dest-path="z"/>',
     "refuses"),
    ('<project name="a" path="x"/><project name="a" path="y"/>'
     '<extend-project name="a" path="x" dest-path="z"/>', "accepts"),
])
def test_remove_and_extend_project(tmp_path: Path, body: str, repo: str) -> None:
    assert outcome(tmp_path, Case(body, repo=repo)) == repo


def test_duplicate_links_from_a_file_included_twice_are_merged(tmp_path: Path) -> None:
    extra = {"one.xml": '<manifest><include name="c.xml"/></manifest>',
             "two.xml": '<manifest><include name="c.xml"/></manifest>',
             "c.xml": '<manifest><extend-project name="a"><linkfile src="s" dest="d"/></extend-project>'
                      '</manifest>'}
    m = load(tmp_path, Case('<project name="a"/><include name="one.xml"/><include name="two.xml"/>',
                            repo="accepts", extra=extra))
    assert [(x.src, x.dest) for x in m.projects[0].linkfiles] == [("s", "d")]


# --- 8. messages -----------------------------------------------------------------------------


def test_a_missing_include_names_the_including_element(tmp_path: Path) -> None:
    extra = {"outer.xml": '<manifest><include name="gone.xml"/></manifest>'}
    with pytest.raises(InputError) as exc:
        load(tmp_path, Case('<include name="outer.xml"/>', repo="refuses", extra=extra))
    assert exc.value.message.startswith('outer.xml: <include name="gone.xml">: included file gone.xml')


def test_a_dest_path_clash_blames_the_extend_project(tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc:
        load(tmp_path, Case('<project name="a"/><project name="b"/><extend-project name="a" dest-path="b"/>',
                            repo="accepts", orch="refuses"))
    assert exc.value.message.startswith('default.xml: <extend-project name="a">: duplicate path "b"')


# --- 6. where orch is deliberately stricter (README: Differences from repo) ------------------


@pytest.mark.parametrize("case", [
    Case(project("server/path", path="."), repo="accepts", orch="refuses"),
    Case(project("server/path", path="./"), repo="accepts", orch="refuses"),
    Case('<include name="../outside.xml"/>', repo="accepts", orch="refuses"),
    Case(project(inner='<project name="sub"/>'), repo="accepts", orch="refuses"),
    Case('<project name="a" path="x"/><extend-project name="a" path="nowhere" revision="r"/>',
         repo="accepts", orch="refuses"),
    Case('<project name="a"/><extend-project name="a" dest-path="../out"/>', repo="accepts", orch="refuses"),
    Case(project(path="a\\b"), repo="accepts", orch="refuses"),
    Case(project(path=".orch/x"), repo="accepts", orch="refuses"),  # orch's own directory
    Case(project(inner='<linkfile src="a" dest=".ORCH/x"/>'), repo="accepts", orch="refuses"),
    Case(project(path="C:x"), repo="accepts", orch="refuses"),
    Case("", repo="accepts", orch="refuses",
         head='<remote name="o" fetch="ext::sh -c x"/><default remote="o" revision="m"/>'),
    Case("", repo="accepts", orch="refuses",
         head='<remote name="o" fetch="http://plain.example.org"/><default remote="o" revision="m"/>'),
])
def test_deliberately_stricter_than_repo(tmp_path: Path, case: Case) -> None:
    (tmp_path / "outside.xml").write_text("<manifest/>")
    assert outcome(tmp_path, case) == case.expected


def test_doctype_without_entities_is_accepted_like_repo(tmp_path: Path) -> None:
    path = tmp_path / "d.xml"
    path.write_text(f'<?xml version="1.0"?>\n<!DOCTYPE manifest []>\n<manifest>{HEAD}{project()}</manifest>')
    assert [p.name for p in load_manifest(path).projects] == ["p"]


def test_an_include_that_is_a_symlink_out_of_the_manifest_repository_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.xml"
    secret.write_text(f"<manifest>{project('stolen')}</manifest>")
    root = tmp_path / "manifests"
    root.mkdir()
    os.symlink(secret, root / "inc.xml")
    (root / "default.xml").write_text(f'<manifest>{HEAD}<include name="inc.xml"/></manifest>')
    with pytest.raises(InputError) as exc:
        load_manifest(root / "default.xml")
    assert 'default.xml: <include name="inc.xml">: inc.xml resolves outside the manifest repository' in (
        exc.value.message)


def test_an_include_symlink_inside_the_manifest_repository_is_fine(tmp_path: Path) -> None:
    root = tmp_path / "manifests"
    (root / "common").mkdir(parents=True)
    (root / "common" / "real.xml").write_text(f"<manifest>{project('inc')}</manifest>")
    os.symlink("common/real.xml", root / "inc.xml")
    (root / "default.xml").write_text(f'<manifest>{HEAD}<include name="inc.xml"/></manifest>')
    assert [p.name for p in load_manifest(root / "default.xml").projects] == ["inc"]


def test_after_dest_path_the_implicit_path_group_is_still_the_declared_path(tmp_path: Path) -> None:
    m = load(tmp_path, Case('<project name="a" path="x"/><extend-project name="a" dest-path="moved"/>',
                            repo="accepts"))
    assert m.projects[0].path == "moved"
    assert [p.path for p in m.select_groups(["path:x"]).projects] == ["moved"]  # as repo selects it
    assert m.select_groups(["path:moved"]).projects == ()
