"""The command line: every subcommand has complete help, and `sdxl-tui DIR` means the dashboard."""

from __future__ import annotations

import pytest

from sdxl_tui import cli


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_every_subcommand_has_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main([name, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: sdxl-tui {name}")
    assert len(out.splitlines()) > 5, "help should explain the command, not just list options"


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert f"    {name} " in out


def test_bare_directory_means_the_dashboard() -> None:
    assert cli._normalise(["/runs/luca"]) == ["tui", "/runs/luca"]
    assert cli._normalise([]) == ["tui"]
    assert cli._normalise(["status", "x"]) == ["status", "x"]


def test_only_the_chosen_command_module_is_parsed(capsys: pytest.CaptureFixture[str]) -> None:
    parser = cli.build_parser("status")
    args = parser.parse_args(["status", "/tmp", "--json"])
    assert args.json is True and args._module == "sdxl_tui.commands.status"
