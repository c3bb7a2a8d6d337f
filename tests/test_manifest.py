"""The manifest model: the real seL4 manifests, every element, and every bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import InputError
from orchestrator.workspace.manifest import Remote, is_sha, load_manifest, resolve_fetch_url, to_xml
from tests.conftest import shared_data

MANIFEST_URL = "https://github.com/seL4/camkes-vm-examples-manifest.git"


def real(name: str) -> Path:
    return shared_data(f"camkes-vm-examples-manifest/{name}")


def write(tmp_path: Path, text: str, name: str = "default.xml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def parse(tmp_path: Path, body: str, **kwargs: object) -> object:
    head = ('<remote name="origin" fetch="https://example.org/git"/>\n'
            '<default remote="origin" revision="main"/>\n')
    return load_manifest(write(tmp_path, f"<manifest>\n{head}{body}\n</manifest>"), **kwargs)  # type: ignore[arg-type]


def error_of(tmp_path: Path, body: str, **kwargs: object) -> str:
    with pytest.raises(InputError) as exc:
        parse(tmp_path, body, **kwargs)
    return exc.value.message


# --- the real seL4 manifests -----------------------------------------------------------------


def test_real_default_xml_parses_to_19_pinned_projects() -> None:
    m = load_manifest(real("default.xml"), manifest_url=MANIFEST_URL)
    assert len(m.projects) == 19
    by_path = {p.path: p for p in m.projects}
    kernel = by_path["kernel"]
    assert kernel.name == "seL4.git"
    assert kernel.url == "https://github.com/seL4/seL4.git"
    assert kernel.revision == "160d05c7ce5243c882f1498b3c7a680ba6a61eca"
    assert kernel.upstream == "master" and kernel.dest_branch == "master"
    assert by_path["projects/seL4_libs"].url == "https://github.com/seL4/seL4_libs"
    assert by_path["projects/libzmq"].url == "https://github.com/zeromq/libzmq"
    assert by_path["projects/libzmq"].upstream == "refs/tags/v4.2.5"
    assert by_path["projects/picotcp"].url == "https://github.com/tass-belgium/picotcp.git"
    assert by_path["tools/polly"].url == "https://github.com/ruslo/polly"
    assert by_path["projects/musllibc"].upstream == "sel4"
    assert all(is_sha(p.revision) for p in m.projects)
    tools = by_path["tools/seL4"]
    assert [(x.src, x.dest) for x in tools.linkfiles] == [
        ("cmake-tool/griddle", "griddle"), ("cmake-tool/init-build.sh", "init-build.sh")]
    assert {p.path for p in m.projects} >= {"projects/vm", "projects/vm-examples", "projects/camkes-tool"}


def test_real_master_xml_follows_branches_and_tags() -> None:
    m = load_manifest(real("master.xml"), manifest_url=MANIFEST_URL)
    assert len(m.projects) == 19
    by_path = {p.path: p for p in m.projects}
    assert by_path["kernel"].revision == "master"
    assert by_path["projects/musllibc"].revision == "sel4"
    assert by_path["projects/lwip"].revision == "refs/tags/STABLE-2_1_2_RELEASE"
    assert by_path["projects/camkes-tool"].url == "https://github.com/seL4/camkes-tool.git"
    default = load_manifest(real("default.xml"), manifest_url=MANIFEST_URL)
    def triples(projects: object) -> set[tuple[str, str, str]]:
        return {(p.name, p.path, p.url) for p in projects}  # type: ignore[attr-defined]

    assert triples(m.projects) == triples(default.projects)


def test_real_manifest_needs_the_manifest_url_for_relative_remotes() -> None:
    with pytest.raises(InputError) as exc:
        load_manifest(real("default.xml"))
    assert 'default.xml: <remote name="seL4">' in exc.value.message
    assert "--manifest-url" in (exc.value.hint or "")


def test_local_manifest_drops_projects_vm_minimal_does_not_need(tmp_path: Path) -> None:
    local = write(tmp_path, """<manifest>
      <remove-project name="libzmq"/>
      <remove-project name="lwip.git"/>
      <remove-project name="picotcp.git"/>
      <remove-project name="polly"/>
    </manifest>""", "local_manifests/vm_minimal.xml")
    m = load_manifest(real("default.xml"), manifest_url=MANIFEST_URL, local_manifests=[local])
    assert len(m.projects) == 15
    assert "projects/libzmq" not in {p.path for p in m.projects}


# --- remote URL resolution -------------------------------------------------------------------


@pytest.mark.parametrize(("fetch", "base", "expected"), [
    ("../seL4", MANIFEST_URL, "https://github.com/seL4"),
    ("..", "https://example.org/a/manifest", "https://example.org"),
    ("./sub", "https://example.org/a/manifest", "https://example.org/a/sub"),
    ("../seL4", "/srv/git/seL4/manifest", "/srv/git/seL4"),
    ("../seL4", "git@github.com:seL4/manifest.git", "git@github.com:seL4"),
    ("https://x.org/y/", MANIFEST_URL, "https://x.org/y"),
])
def test_resolve_fetch_url(fetch: str, base: str, expected: str) -> None:
    assert resolve_fetch_url(fetch, base) == expected


# --- elements --------------------------------------------------------------------------------


def test_defaults_remote_revision_and_groups(tmp_path: Path) -> None:
    m = parse(tmp_path, """
      <remote name="other" fetch="https://other.org" revision="stable"/>
      <project name="a"/>
      <project name="b" path="x/b" remote="other" groups="notdefault,extra"/>
      <project name="c" path="c" revision="refs/tags/v1" upstream="main" dest-branch="review"/>
    """)
    a, b, c = m.projects  # type: ignore[attr-defined]
    assert (a.path, a.url, a.revision) == ("a", "https://example.org/git/a", "main")
    assert (b.url, b.revision, b.groups) == ("https://other.org/b", "stable", ("notdefault", "extra"))
    assert (c.revision, c.upstream, c.dest_branch) == ("refs/tags/v1", "main", "review")
    assert [p.path for p in m.select_groups(["default"]).projects] == ["a", "c"]  # type: ignore[attr-defined]
    assert [p.path for p in m.select_groups(["extra"]).projects] == ["x/b"]  # type: ignore[attr-defined]
    assert len(m.select_groups(["all", "-name:a"]).projects) == 2  # type: ignore[attr-defined]


def test_include_is_relative_to_the_manifest_directory(tmp_path: Path) -> None:
    write(tmp_path, '<manifest><project name="inc" path="inc"/></manifest>', "sub/extra.xml")
    m = parse(tmp_path, '<include name="sub/extra.xml"/><project name="top"/>')
    assert [p.name for p in m.projects] == ["inc", "top"]  # type: ignore[attr-defined]


def test_extend_and_remove_project(tmp_path: Path) -> None:
    m = parse(tmp_path, """
      <project name="a" groups="g1"><linkfile src="x" dest="y"/></project>
      <project name="b"/>
      <extend-project name="a" revision="v2" groups="g2"><copyfile src="c" dest="d"/></extend-project>
      <remove-project name="b"/>
      <remove-project name="gone" optional="true"/>
    """)
    (a,) = m.projects  # type: ignore[attr-defined]
    assert a.revision == "v2" and a.groups == ("g1", "g2")
    assert [(x.src, x.dest) for x in a.linkfiles] == [("x", "y")]
    assert [(x.src, x.dest) for x in a.copyfiles] == [("c", "d")]


def test_local_manifest_can_readd_a_removed_project_at_another_revision(tmp_path: Path) -> None:
    local = write(tmp_path, """<manifest>
      <remove-project name="a"/>
      <project name="a" path="a" revision="mine"/>
      <project name="extra" path="tools/extra"/>
    </manifest>""", "local/one.xml")
    m = parse(tmp_path, '<project name="a"/>', local_manifests=[local])
    assert [(p.path, p.revision) for p in m.projects] == [("a", "mine"), ("tools/extra", "main")]  # type: ignore[attr-defined]


def test_to_xml_round_trips_and_pins(tmp_path: Path) -> None:
    m = parse(tmp_path, '<project name="a" groups="g"><linkfile src="x" dest="y"/></project>')
    sha = "1" * 40
    xml = to_xml(m, {"a": sha})  # type: ignore[arg-type]
    again = load_manifest(write(tmp_path, xml, "pinned.xml"))
    (a,) = again.projects
    assert (a.revision, a.upstream, a.url, a.groups) == (sha, "main", "https://example.org/git/a", ("g",))
    assert a.linkfiles[0].dest == "y"


# --- bad input -------------------------------------------------------------------------------


def test_malformed_xml_names_file_and_position(tmp_path: Path) -> None:
    path = write(tmp_path, "<manifest>\n  <project name='a'\n</manifest>")
    with pytest.raises(InputError) as exc:
        load_manifest(path)
    assert exc.value.message.startswith("default.xml: malformed XML at line 3")


def test_entity_bomb_is_refused(tmp_path: Path) -> None:
    bomb = """<?xml version="1.0"?>
<!DOCTYPE manifest [
  <!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
  <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
  <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
]>
<manifest><project name="&c;"/></manifest>"""
    with pytest.raises(InputError) as exc:
        load_manifest(write(tmp_path, bomb))
    assert "default.xml: refused" in exc.value.message


def test_remotes_keep_fetch_as_written_and_projects_know_where_they_were_declared(tmp_path: Path) -> None:
    m = load_manifest(write(tmp_path, '<manifest>\n<remote name="seL4" fetch="../seL4" revision="13.0"/>\n'
                                      '<default remote="seL4"/>\n<project name="kernel.git" path="kernel"/>\n'
                                      '</manifest>'), manifest_url=MANIFEST_URL)
    assert m.remotes == {"seL4": Remote("seL4", "../seL4", "https://github.com/seL4", "13.0")}
    kernel = m.project("kernel")
    assert kernel.revision == "13.0" and kernel.url == "https://github.com/seL4/kernel.git"
    assert kernel.where == 'default.xml: <project name="kernel.git" path="kernel">'  # for messages


def test_unknown_remote(tmp_path: Path) -> None:
    message = error_of(tmp_path, '<project name="x" remote="nope"/>')
    assert message == "default.xml: <project name=\"x\">: unknown remote 'nope'"
    with pytest.raises(InputError) as exc:
        parse(tmp_path, '<project name="x" remote="nope"/>')
    assert exc.value.hint == "defined remotes: origin"


def test_duplicate_path(tmp_path: Path) -> None:
    message = error_of(tmp_path, '<project name="x" path="p"/><project name="y" path="p"/>')
    assert 'default.xml: <project name="y" path="p">: duplicate path' in message


def test_duplicate_name_and_path(tmp_path: Path) -> None:
    message = error_of(tmp_path, '<project name="x"/><project name="x"/>')
    assert 'default.xml: <project name="x">: duplicate name and path' in message


@pytest.mark.parametrize("path", ["../evil", "/etc", "a/../../b", "~/x", "a/.git/b", ".orch/x", "."])
def test_bad_project_paths(tmp_path: Path, path: str) -> None:
    message = error_of(tmp_path, f'<project name="x" path="{path}"/>')
    assert message.startswith(f'default.xml: <project name="x" path="{path}">: ')
    assert "path" in message.split(">: ", 1)[1]


@pytest.mark.parametrize(("tag", "attrs"), [
    ("linkfile", 'src="../../etc/passwd" dest="x"'),
    ("linkfile", 'src="x" dest="/tmp/x"'),
    ("copyfile", 'src="x" dest="../outside"'),
    ("copyfile", 'src="/etc/passwd" dest="x"'),
])
def test_bad_linkfile_and_copyfile_paths(tmp_path: Path, tag: str, attrs: str) -> None:
    message = error_of(tmp_path, f'<project name="x"><{tag} {attrs}/></project>')
    assert message.startswith(f"default.xml: <{tag} ")
    assert "invalid src" in message or "invalid dest" in message


def test_include_cycle(tmp_path: Path) -> None:
    write(tmp_path, '<manifest><include name="b.xml"/></manifest>', "a.xml")
    write(tmp_path, '<manifest><include name="a.xml"/></manifest>', "b.xml")
    message = error_of(tmp_path, '<include name="a.xml"/>')
    assert "include cycle" in message and "a.xml -> b.xml -> a.xml" in message


def test_missing_include(tmp_path: Path) -> None:
    assert error_of(tmp_path, '<include name="nope.xml"/>') == (
        'default.xml: <include name="nope.xml">: included file nope.xml does not exist or is not a file')


def test_unknown_element_is_a_warning_and_remove_of_missing_project_an_error(tmp_path: Path) -> None:
    m = parse(tmp_path, '<projct name="x"/>')
    assert m.warnings == ('default.xml: <projct name="x">: unknown element, ignored',)  # type: ignore[attr-defined]
    assert "no such project to remove" in error_of(tmp_path, '<remove-project name="x"/>')
    assert "no such project to extend" in error_of(tmp_path, '<extend-project name="x"/>')


def test_no_revision_anywhere(tmp_path: Path) -> None:
    path = write(tmp_path, '<manifest><remote name="o" fetch="https://e.org"/>'
                 '<project name="x" remote="o"/></manifest>')
    with pytest.raises(InputError) as exc:
        load_manifest(path)
    assert "no revision" in exc.value.message


def test_wrong_root_element(tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc:
        load_manifest(write(tmp_path, "<project/>"))
    assert "expected <manifest>" in exc.value.message
