"""`sdxl-tui report DIR [-o FILE] [--format html|md]`: the morning report of a run.

Why a command: "how did the night go" is asked once, in the morning, often from another
machine; one self-contained HTML file (or Markdown for a terminal or a chat hook) answers it
without a dashboard. The dashboard's key ``R`` and the ``report.on_end`` setting (the
supervisor of ``sdxl-tui start``) run the same code. Module-level imports stay light.
"""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = """\
Write the morning report of a kohya-ss sd-scripts run directory (the trainer's --output_dir):
the outcome and its reason; a timeline of loading, caching, training, saving and sampling,
with stops and resumes (from the log's record times, TensorBoard's wall times and the
checkpoints' modification times); loss and learning-rate charts (TensorBoard's debiased EMA
smoothing); every checkpoint with its loss at save and evaluation status; the latest sample
images and evaluation contact sheets; a GPU summary (peak VRAM, mean utilisation,
temperature, throttling) from the history the supervisor of `sdxl-tui start` records;
alerts with their fixes; the exact command (shell-quoted) and the configuration.

--format html (the default) writes one self-contained file: styles, charts and images are
inside it, nothing refers to the network, so a copy opens anywhere (light and dark).
--format md writes Markdown (a loss sparkline, image paths) for a terminal or a chat hook."""

EPILOG = """\
output:
  html: -o FILE, default DIR/.sdxl-tui/report.html;  md: -o FILE, default standard output.
  `-o -` writes to standard output. A file is written whole (temporary file, then renamed).
  With report.on_end = true (settings file or SDXL_TUI_REPORT_ON_END=1), the supervisor of a
  run started by `sdxl-tui start` writes DIR/.sdxl-tui/report.html and report.md when it ends.

examples:
  sdxl-tui report /mnt/data/ai_data/models/lora/luca/sdxl_v1
  sdxl-tui report DIR -o ~/luca_v1.html && scp box:luca_v1.html .
  sdxl-tui report DIR --format md | mail -s "training report" me@example.org

exit status:
  0  the report was written (whatever the run's state)
  1  the directory or the output could not be read or written (permission denied, disk full)
  2  no such directory, not a directory, a bad --config file, or bad usage"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sdxl_tui.report.write import FORMATS

    parser.add_argument("dir", metavar="DIR", help="the run directory (the trainer's --output_dir)")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="where to write (- for standard output); see 'output' below")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="html (default; md when FILE ends in .md) or md (Markdown)")
    parser.add_argument("--log", metavar="FILE", help="the console log (default: DIR/training.log)")
    parser.add_argument("--logs", metavar="DIR", dest="logs_dir",
                        help="TensorBoard directory (default: DIR and the trainer's --logging_dir)")
    parser.add_argument("--no-gpu", action="store_true", help="do not query NVML for the current GPU state")
    parser.add_argument("--no-procs", action="store_true", help="do not scan the process table")
    parser.add_argument("--config", metavar="FILE", help="sdxl-tui settings TOML")
    parser.add_argument("--launch", metavar="FILE", help="launch config TOML (default: DIR/sdxl-tui.toml)")


def _err(message: str) -> None:
    print(f"sdxl-tui report: {message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from sdxl_tui.commands._rundir import readable_run_dir

    run_dir, status = readable_run_dir(args.dir, _err)
    if status:
        return status
    from sdxl_tui.report.write import default_output, render, write_text_atomic

    fmt = args.format or ("md" if (args.output or "").endswith(".md") else "html")
    output = args.output or (default_output(run_dir, fmt) if fmt == "html" else "-")

    from sdxl_tui.config import ConfigError, load_settings

    try:
        settings = load_settings(config_path=args.config)
    except ConfigError as exc:
        _err(str(exc))
        return 2
    try:
        text = render(run_dir, fmt, settings=settings, log_path=args.log, logs_dir=args.logs_dir,
                      gpu=not args.no_gpu, procs=not args.no_procs, launch_file=args.launch)
    except OSError as exc:
        _err(f"cannot read {args.dir}: {exc.strerror or exc}")
        return 1
    if output == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return 0
    try:
        write_text_atomic(output, text)
    except OSError as exc:
        _err(f"cannot write {output}: {exc.strerror or exc} (choose another place with -o FILE)")
        return 1
    print(f"report written: {output} ({len(text.encode('utf-8')) / 1000:.0f} KB)")
    return 0
