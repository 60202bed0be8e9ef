"""`sdxl-tui export RUN_OR_ROOT... -o FILE`: every TensorBoard scalar of the runs as one table.

Module-level imports stay light (``--help`` must not import pandas or tbparse).
"""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = """\
Export every TensorBoard scalar (loss/current, loss/average, loss/epoch, lr/...) of one or
more runs as one table, read with tbparse: one row per point, with the columns run, tag,
step, wall_time, value, and trial for the trials of an SD1.5 optimisation folder
(trial_NNNN/logs). A path may be one run, a folder of runs (luca/: sdxl_v1, sdxl_v2,
optimization_overnight...) or an optimisation folder; runs are found the way `sdxl-tui
status ROOT` finds them, and each contributes only its own event files (RUN/logs, else RUN).
The run column is the run's path below the path given."""

EPILOG = """\
examples:
  sdxl-tui export /mnt/data/ai_data/models/lora/luca -o luca.parquet
  sdxl-tui export luca/sdxl_v1 luca/sdxl_v2 -o v1_v2.csv
  python -c "import pandas as pd; print(pd.read_parquet('luca.parquet').groupby('run').value.min())"

output:
  .csv, or .parquet (needs pyarrow); written whole (a temporary file, then renamed).

exit status:
  0  written (a run without event files adds no rows)
  2  a path is missing or holds no sd-scripts run, an output suffix other than .csv/.parquet,
     or the file cannot be written"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="RUN_OR_ROOT", help="run directories or folders of runs")
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help="the table to write (.csv or .parquet)")


def run(args: argparse.Namespace) -> int:
    from sdxl_tui.report.export import ExportError, collect, sources_of, write_table

    try:
        sources = sources_of(args.paths)
        table = collect(sources)
        write_table(table, args.output)
    except ExportError as exc:
        print(f"sdxl-tui export: {exc}", file=sys.stderr)
        return 2
    runs = table["run"].nunique() if len(table) else 0
    print(f"{args.output}: {len(table)} rows, {runs} run(s) of {len(sources)} with event files; "
          f"columns {', '.join(table.columns)}")
    return 0
