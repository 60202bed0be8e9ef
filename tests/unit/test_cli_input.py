"""Wrong input, as a user types it: every command run as a real process (stdin at /dev/null),
each answered with a clear message and exit 2, never a traceback; the dashboard refuses to
start without a terminal and points to `status --watch`, which follows a run as plain text."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sdxl_tui.cli import COMMANDS
from tests.helpers.unprivileged import unprivileged

ROOT = Path(__file__).resolve().parents[2]


def sdxl(*argv: str, cwd: Path, timeout: float = 120, as_user: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the CLI; ``as_user``: where file modes apply even to root (tests/helpers/unprivileged.py)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SDXL_TUI_")}
    env.update(PYTHONPATH=str(ROOT / "src"), XDG_CONFIG_HOME=str(cwd / "xdg"))
    command = [sys.executable, "-m", "sdxl_tui", *argv]
    return subprocess.run(
        unprivileged(command) if as_user else command,
        cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, env=env,
    )


def refused(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    text = result.stdout + result.stderr
    assert result.returncode == 2, text
    assert "Traceback" not in text, text
    for needle in needles:
        assert needle in text, text
    return text


def test_a_mistyped_command_gets_a_suggestion_not_a_dashboard(tmp_path: Path) -> None:
    refused(sdxl("stauts", str(tmp_path), cwd=tmp_path), "did you mean status?")
    text = refused(sdxl("bogus-command", cwd=tmp_path), "'bogus-command' is not a command")
    assert "status" in text and "report" in text  # the command list
    assert not (tmp_path / "bogus-command").exists()


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_mistyped_option_on_every_command_is_refused(tmp_path: Path, command: str) -> None:
    required = {"queue": ["list"], "export": ["-o", "out.csv"]}  # what argparse asks for first
    argv = [command, *required.get(command, [])]
    refused(sdxl(*argv, "--no-such-optoin", str(tmp_path), cwd=tmp_path), "unrecognized arguments: --no-such-optoin")


def test_a_mistyped_option_names_the_close_one(tmp_path: Path) -> None:
    refused(sdxl("status", str(tmp_path), "--jsn", cwd=tmp_path), "did you mean --json?")
    refused(sdxl("tui", str(tmp_path), "--redonly", cwd=tmp_path), "did you mean --readonly?")
    refused(sdxl("check", "--jsn", "x.toml", cwd=tmp_path), "did you mean --json?")


def test_missing_paths_and_files_instead_of_dirs(tmp_path: Path) -> None:
    afile = tmp_path / "x.safetensors"
    afile.write_bytes(b"\0" * 16)
    refused(sdxl("status", str(tmp_path / "nope"), cwd=tmp_path), "no such directory")
    refused(sdxl("status", str(afile), cwd=tmp_path), "not a directory")
    refused(sdxl(str(afile), cwd=tmp_path), "not a directory")
    refused(sdxl("eval", str(tmp_path / "nope"), "3", cwd=tmp_path), "no such directory")
    refused(sdxl("eval", str(afile), "3", cwd=tmp_path), "not a directory")
    refused(sdxl("report", str(tmp_path / "nope"), cwd=tmp_path))
    text = refused(sdxl("check", str(afile), cwd=tmp_path), "is not a launch config")
    assert "stray-argument" not in text and text.count("\n") <= 2
    refused(sdxl("check", "missing.toml", cwd=tmp_path), "no such file or directory")


def test_unreadable_directories_say_permission_denied(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        refused(sdxl("eval", str(locked), "3", cwd=tmp_path, as_user=True), "permission denied")
        text = refused(sdxl("check", str(locked), cwd=tmp_path, as_user=True), "permission denied")
        assert "Errno" not in text
        refused(sdxl(str(locked), cwd=tmp_path, as_user=True), "permission denied")
    finally:
        locked.chmod(0o755)


def test_the_dashboard_without_a_terminal_exits_and_points_to_status(tmp_path: Path) -> None:
    started = time.monotonic()
    result = sdxl(str(tmp_path), cwd=tmp_path)
    refused(result, "needs a terminal", f"sdxl-tui status {tmp_path}", "--watch")
    assert "\x1b" not in result.stdout  # no escape codes written into a nohup.out
    assert time.monotonic() - started < 60
    refused(sdxl("demo", cwd=tmp_path), "needs a terminal")


def test_demo_refuses_a_used_directory_and_never_empties_it_without_a_terminal(tmp_path: Path) -> None:
    old = tmp_path / "old"
    old.mkdir()
    (old / "training.log").write_text("an earlier run\n")
    refused(sdxl("demo", "--dir", str(old), cwd=tmp_path), "already holds 1 file", "--force")
    refused(sdxl("demo", "--dir", str(old), "--force", cwd=tmp_path), "needs a terminal")
    assert (old / "training.log").read_text() == "an earlier run\n"


def test_help_texts_name_the_config_variable_and_read_well(tmp_path: Path) -> None:
    top = sdxl("--help", cwd=tmp_path)
    assert top.returncode == 0 and "$SDXL_TUI_CONFIG" in top.stdout
    demo = sdxl("demo", "--help", cwd=tmp_path)
    assert demo.returncode == 0 and "--keep keeps both the directory and, with --keep" not in demo.stdout
    assert "--force" in demo.stdout
    status = sdxl("status", "--help", cwd=tmp_path)
    assert "--watch" in status.stdout and "--interval" in status.stdout


def test_status_watch_prints_snapshots_and_checks_its_options(real_run: Path, tmp_path: Path) -> None:
    result = sdxl("status", str(real_run), "--watch", "--interval", "0.2", "--count", "2", "--no-gpu",
                  "--no-procs", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("state       finished:") == 2
    assert result.stdout.count("(Ctrl+C to stop)") == 2 and "\x1b" not in result.stdout
    refused(sdxl("status", str(real_run), "--watch", "--json", cwd=tmp_path), "--watch prints text")
    refused(sdxl("status", str(real_run), "--watch", "--interval", "0", cwd=tmp_path), "positive")


def test_status_watch_ends_cleanly_on_ctrl_c(real_run: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sdxl_tui", "status", str(real_run), "--watch", "--interval", "30", "--no-gpu",
         "--no-procs"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the first snapshot's time stamp line: it is now asleep
        assert "(Ctrl+C to stop)" in first
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


def test_no_traceback_when_the_config_file_is_broken(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[ui\n")
    refused(sdxl("status", str(tmp_path), "--config", str(bad), cwd=tmp_path))
    refused(sdxl("tui", str(tmp_path), "--config", str(bad), cwd=tmp_path))
    assert shutil.which("true")  # the box has coreutils; nothing above needed a shell
