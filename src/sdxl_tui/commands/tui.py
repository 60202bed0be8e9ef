"""`sdxl-tui [tui] [DIR]`: the live dashboard on a run directory.

Module-level imports stay light: ``sdxl-tui --help`` and the other subcommands must not pay
for Textual, which is imported only inside :func:`run`.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

DESCRIPTION = """\
Open the live dashboard on a kohya-ss sd-scripts run directory (the trainer's --output_dir),
e.g. `sdxl-tui /mnt/data/ai_data/models/lora/luca/sdxl_v1` in a tmux pane left open overnight.

It shows the run's state, elapsed time, ETA and the finish clock ("done ~06:40"), the next
checkpoint, epoch and step progress, the loss (always visible; `c` for the full chart with
TensorBoard-style smoothing, log-Y, outlier clipping, step or wall-clock axis, learning rate
and resume points), the GPUs (VRAM, utilisation, temperature, power, the trainer's own VRAM
and their history), every checkpoint (epoch, step, size, age, loss at save, resumable state,
evaluation, complete/writing), the log tail (follows; pauses when scrolled up; search) and
alerts (finished, crashed, out of memory, NaN, stalled, disk, GPU heat) as a pane, in-app
notifications, the terminal bell, OSC 9 / OSC 777 desktop notifications (tmux passthrough
inside tmux) and an optional hook command.

The directory is watched with inotify (watchdog) and polled as a fallback: remote filesystems
(NFS, SSHFS, CIFS) and --force-polling poll every refresh.log_interval seconds. Nothing in DIR
is written by watching. Quitting never touches the training."""

KEYS = """\
keys (ids in brackets; rebind with [ui] keymap = { kill-run = "ctrl+k" }):
  s   start training from the launch config, after a preflight check      [start-run]
  e   evaluate the selected checkpoint (now, or queued until training ends) [evaluate-checkpoint]
  k   kill the training, after a confirmation naming pid, user, command  [kill-run]
  x   stop the training after its next complete checkpoint (again: cancel) [stop-after-checkpoint]
  g   comparison grid: same prompts and seeds over several checkpoints     [compare-checkpoints]
      (asks which: 6-10, 6,8,10 or names; default the epochs 6-10), then shows the grid
  i   sample/evaluation images of the selected checkpoint                 [show-images]
  c   full loss chart ([ ] smoothing, l log-Y, o outliers, w step/wall, r LR) [toggle-chart]
  R   write the morning report (DIR/.sdxl-tui/report.html) and say where  [morning-report]
  a   the Alerts pane with each alert's fix (again: back to the log)      [show-alerts]
  /   search the log: enter searches, then n older / N newer match         [search-log]
  ?   every key as bound now                                              [help]
  q   quit (the training keeps running)                                   [quit]
  a folder of runs (DIR holds sdxl_v1/, sdxl_v2/, optimization_overnight/...): the runs view,
      one row per run, live first: enter opens the run's dashboard (escape or q comes back),
      space marks, c compares the marked runs (curves + config diff; a: axis, [ ]: smoothing),
      t the optimisation's trials (p: `sdxl-tui plan --from` the selected trial, asking for the
      dataset, SDXL base and output folder; b: the best), R the selected run's report,
      r refreshes, q quits. CLI twins: status DIR, compare, export, plan --from, report.
  ctrl+p command palette ("run: kill", "checkpoint: evaluate", "checkpoint: compare", ...);
  end: follow the log again.
  Keys that cannot apply now are greyed out in the footer (no live trainer: no kill);
  --readonly removes start, kill, stop-after-checkpoint, evaluate and compare."""


def _epilog() -> str:
    from sdxl_tui.config import settings_help

    return f"""\
{KEYS}

configuration:
  precedence, highest first: command-line options > SDXL_TUI_* environment variables >
  the TOML file (--config FILE, else $SDXL_TUI_CONFIG, else
  $XDG_CONFIG_HOME/sdxl-tui/config.toml, else ~/.config/sdxl-tui/config.toml) > defaults.
  `--show-config` prints every value and where it came from.

  example config.toml:
    [refresh]
    log_interval = 0.25
    [ui]
    theme = "nord"
    keymap = {{ kill-run = "ctrl+k", toggle-chart = "v" }}
    [alerts]
    hook = ["/home/me/bin/alert-to-phone", "--quiet"]   # argv list; alert JSON on stdin
    [eval]
    command = ["python", "evaluate_single_checkpoint.py", "--checkpoint", "{{checkpoint}}",
               "--base-model", "{{base_model}}", "--output-dir", "{{output_dir}}"]

{settings_help()}

launch config (for `s`): DIR/sdxl-tui.toml or --launch FILE (see docs; `sdxl-tui plan`).

examples:
  sdxl-tui /mnt/data/ai_data/models/lora/luca/sdxl_v1
  sdxl-tui DIR --readonly --force-polling          # an NFS mount, watch only
  SDXL_TUI_UI_THEME=gruvbox sdxl-tui DIR
  sdxl-tui demo                                    # a simulated run, no GPU needed

exit status: 0 after quitting; 2 bad usage, a bad config file, or no run directory."""


EPILOG = _epilog()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR", nargs="?", help="the run directory (default: the current directory)")
    parser.add_argument(
        "--readonly", action="store_true", default=None, help="remove start, kill, stop, eval and compare (ui.readonly)"
    )
    parser.add_argument("--config", metavar="FILE", help="settings TOML (default: the XDG location)")
    parser.add_argument("--log", metavar="FILE", help="the console log (default: DIR/training.log)")
    parser.add_argument(
        "--logs",
        metavar="DIR",
        dest="logs_dir",
        help="TensorBoard directory (default: DIR and the trainer's --logging_dir)",
    )
    parser.add_argument(
        "--launch", metavar="FILE", help="launch config TOML for `s` (default: DIR/sdxl-tui.toml; launch.file)"
    )
    parser.add_argument("--theme", metavar="T", help="Textual theme, e.g. textual-dark, nord, gruvbox (ui.theme)")
    parser.add_argument(
        "--force-polling", action="store_true", default=None, help="never use inotify (refresh.force_polling)"
    )
    parser.add_argument("--no-gpu", action="store_true", help="do not query NVML")
    parser.add_argument(
        "--show-config", action="store_true", help="print the resolved settings and where each came from, then exit"
    )


def cli_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Dotted setting names given on the command line (None: not given)."""
    return {
        "ui.readonly": getattr(args, "readonly", None),
        "ui.theme": getattr(args, "theme", None),
        "refresh.force_polling": getattr(args, "force_polling", None),
        "launch.file": getattr(args, "launch", None),
    }


def show_config(settings: Any) -> str:
    from sdxl_tui.config import SPECS

    lines = [f"config file: {settings.config_file or '(none)'}"]
    for spec in SPECS:
        value = settings.value(spec.name)
        if hasattr(value, "items"):
            value = dict(value)
        lines.append(f"{spec.name:<24} = {value!r:<40} ({settings.sources[spec.name]})")
    return "\n".join(lines)


def looks_like_run(path: str) -> bool:
    """A directory an sd-scripts run wrote to (or will: a launch config is there)."""
    from sdxl_tui.formats.launch_config import DEFAULT_NAME
    from sdxl_tui.formats.statedir import STATE_DIR

    try:
        names = os.listdir(path)
    except OSError:
        return False
    return any(
        n in ("training.log", DEFAULT_NAME, STATE_DIR, "logs")
        or n.endswith((".safetensors", ".log"))
        for n in names
    )


#: How long ``build_app`` waits for the prefetch children once Textual is imported.
_FIRST_READ_WAIT = 0.3


def build_app(
    settings: Any,
    run_dir: str,
    *,
    log_path: str | None = None,
    logs_dir: str | None = None,
    no_gpu: bool = False,
    notice: str | None = None,
) -> Any:
    """The dashboard as the CLI builds it: the run's first read starts before Textual loads.

    The event files (most of a cold start) are decoded in a forked child, the log and the
    checkpoint headers in another (``RunReader.prefetch_first_read``, from the cached state if
    any) while this process imports Textual; the reader's first refresh adopts the event
    state and loads the rest from the cache: the run is read once. When the children finish
    soon after Textual is imported, that refresh runs here and the screen is composed with the
    run in it; otherwise the feed thread does it and the screen shows up first.
    """
    from sdxl_tui.sources.gpu import LatestGpu
    from sdxl_tui.sources.rundir import RunReader

    latest = LatestGpu()  # the GPU feed samples NVML; the reader takes its latest status
    reader = RunReader(
        run_dir,
        log_path=log_path,
        logs_dir=logs_dir,
        gpu=None if no_gpu else latest,
        settings=settings,
        launch_file=settings.launch.file,
        cache=True,
    )
    forked = reader.prefetch_first_read()  # fork now, while this process has one thread
    from sdxl_tui.tui.app import make_app

    app = make_app(
        settings,
        run_dir,
        reader=reader,
        gpu=False if no_gpu else None,
        gpu_latest=latest,
        log_path=log_path,
        logs_dir=logs_dir,
        launch_file=settings.launch.file,
        notice=notice,
    )
    if forked and reader.prefetch_done(_FIRST_READ_WAIT):
        # The children are done (or nearly): take the first snapshot here, so the screen
        # is composed with the run in it, instead of in the feed thread, where it would take
        # turns (the GIL) with the rendering of an empty screen. A slower first read (a huge
        # run without cache) is left to the feed: the screen shows up first, then the run.
        try:
            app.feeds.first_snapshot = reader.refresh()
        except Exception:  # noqa: BLE001 - the feed thread refreshes again and reports it
            app.feeds.first_snapshot = None
    return app


def no_terminal_message(run_dir: str | None) -> str | None:
    """Why the dashboard cannot start here (stdin or stdout not a terminal), or None.

    Under ``nohup``, cron or ``ssh host sdxl-tui DIR`` without ``-t`` a full-screen app would
    write escape codes into a file and spin on a core of the box that trains.
    """
    if sys.stdin.isatty() and sys.stdout.isatty():
        return None
    bad = [n for n, f in (("stdin", sys.stdin), ("stdout", sys.stdout)) if not f.isatty()]
    which = "stdin and stdout are not terminals" if len(bad) == 2 else f"{bad[0]} is not a terminal"
    target = run_dir or "DIR"
    return (
        f"sdxl-tui: the dashboard needs a terminal ({which}: nohup, cron, a pipe, or ssh without -t).\n"
        f"  sdxl-tui status {target}                  print the run's state once\n"
        f"  sdxl-tui status {target} --watch          follow it as plain text (Ctrl+C to stop)\n"
        f"  ssh -t HOST sdxl-tui {target}             a terminal over ssh"
    )


def run(args: argparse.Namespace) -> int:
    from sdxl_tui.config import ConfigError, load_settings

    try:
        settings = load_settings(cli_overrides(args), args.config)
    except ConfigError as exc:
        print(f"sdxl-tui: {exc}", file=sys.stderr)
        return 2
    if args.show_config:
        print(show_config(settings))
        return 0
    run_dir = args.dir
    if run_dir is None:
        cwd = os.getcwd()
        from sdxl_tui.commands.runs_tui import is_runs_root

        if not looks_like_run(cwd) and not is_runs_root(cwd):
            print(
                "sdxl-tui: no run directory given and the current directory holds no run.\n"
                "  sdxl-tui /path/to/output_dir    watch a run (the trainer's --output_dir)\n"
                "  sdxl-tui demo                   try it on a simulated run",
                file=sys.stderr,
            )
            return 2
        run_dir = cwd
    run_dir = os.path.abspath(os.path.expanduser(run_dir))
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        print(f"sdxl-tui: not a directory: {run_dir}", file=sys.stderr)
        return 2
    if os.path.isdir(run_dir) and not os.access(run_dir, os.R_OK | os.X_OK):
        print(f"sdxl-tui: cannot read {run_dir}: permission denied", file=sys.stderr)
        return 2
    refusal = no_terminal_message(run_dir)
    if refusal:
        print(refusal, file=sys.stderr)
        return 2
    if os.path.isdir(run_dir) and not (args.log or args.logs_dir):
        from sdxl_tui.commands.runs_tui import is_runs_root, run_runs_view

        if is_runs_root(run_dir):  # a folder of runs: the runs view (Enter opens one, Escape comes back)
            return run_runs_view(run_dir, settings, lambda s, d: build_app(s, d, no_gpu=args.no_gpu),
                                 gpu=not args.no_gpu)
    notice = None if os.path.isdir(run_dir) else f"waiting for {run_dir} to be created (q or Ctrl+C to quit)"
    if os.path.isdir(run_dir) and not (args.log or args.logs_dir):
        from sdxl_tui.commands.runs_tui import runs_below_notice

        below = runs_below_notice(run_dir)
        if below is not None:  # a run holding other runs: only its own logs/, and say where the others are
            args.logs_dir, notice = os.path.join(run_dir, "logs"), below
    app = build_app(settings, run_dir, log_path=args.log, logs_dir=args.logs_dir, no_gpu=args.no_gpu, notice=notice)
    result = app.run()
    return int(result or 0)
