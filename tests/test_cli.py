def test_cli_help(capsys):
    import pytest
    from orchestrator.cli import main
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "sync" in capsys.readouterr().out
