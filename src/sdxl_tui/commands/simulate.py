"""`sdxl-tui simulate`: a simulated sd-scripts trainer that writes the real formats.

Everything after ``simulate`` is handed, untouched, to a parser rebuilt from the real
``sdxl_train_network.py`` option table (plus the ``--sim-*`` options), so a launch line for
the real trainer drives the simulator by swapping the script, and unknown options fail with
the real ``sdxl_train_network.py: error: unrecognized arguments: ...`` (exit 2). The module
imports nothing heavy; the simulator is imported inside :func:`run`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

DESCRIPTION = (
    "Run a simulated kohya-ss sd-scripts sdxl_train_network.py: a real process that writes "
    "what the real trainer writes (console log on stdout/stderr, TensorBoard events, LoRA "
    ".safetensors checkpoints, --save_state folders, sample PNGs). Launch it like the real "
    "one: `sdxl-tui simulate --output_dir OUT [sd-scripts options] > OUT/training.log 2>&1 &`. "
    "It accepts every sd-scripts option (most have no effect) and these of its own."
)

EPILOG = """\
simulation options:
  --sim-step-seconds S       seconds per optimizer step (0 = as fast as possible; default 0.5)
  --sim-startup-seconds S    loading/caching time before training (default 1.0)
  --sim-batches-per-epoch N  dataloader batches per epoch (default: from --dataset_config)
  --sim-fault {oom,nan,hang,crash}
                             inject a failure (CUDA OOM traceback, NaN loss from then on,
                             a silent hang, a RuntimeError traceback) ...
  --sim-fault-step N         ... at optimizer step N (default 1)
  --sim-hang-seconds S       end a simulated hang after S seconds (default 0 = never)
  --sim-real-size            LoRA tensors with the real SDXL shapes (big files)
  --sim-seed N               seed of the simulated loss curve (default 42)
  --sim-hostname NAME        host name in the event file name (default: this host)
  --sim-script train_network.py
                             be SD1.5's train_network.py instead of sdxl_train_network.py: its
                             option table, ss_base_model_version sd_v1, one text encoder
                             (lora_te_*), SD1.5 U-Net module names (add --resolution 512)

signals behave like the real trainer's: SIGTERM kills silently (nothing saved),
SIGINT prints a KeyboardInterrupt traceback and exits by SIGINT.

ranks: started by `torchrun` or `accelerate launch --multi_gpu --num_processes N`, each
process reads RANK, LOCAL_RANK and WORLD_SIZE and acts as that rank of sd-scripts: only
rank 0 saves checkpoints and state and writes the event file, only local rank 0 prints the
progress bar and accelerator.print lines, every rank logs; each rank gets ceil(batches / N)
batches per epoch; the ranks join a gloo process group (when torch is installed) and wait
for each other before saves. (`accelerate launch --cpu` starts one process, whatever
--num_processes says.)

exit status: 0 finished; 1 oom or crash; 2 unrecognized arguments.
"""

_HELP = ("-h", "--help")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the pass-through argument and make this subparser keep every token."""
    parser.add_argument(
        "trainer_args",
        nargs="*",
        metavar="OPTION",
        help="sd-scripts sdxl_train_network.py options (including --output_dir) and --sim-* options",
    )
    original = parser.parse_known_args

    # argparse cannot hand unknown "--options" to a positional; the subcommand must see the
    # trainer's argv verbatim (its own parser reports unknown options the real way).
    def parse_known_args(args=None, namespace=None):  # type: ignore[no-untyped-def]
        tokens = list(sys.argv[1:] if args is None else args)
        if tokens[:1] and tokens[0] in _HELP:
            return original(tokens, namespace)
        ns, _ = original([], namespace)  # the subparser's defaults (set_defaults included)
        ns.trainer_args = tokens
        return ns, []

    parser.parse_known_args = parse_known_args  # type: ignore[method-assign]


def run(args: argparse.Namespace) -> int:
    from sdxl_tui.sim.console import SimConsole
    from sdxl_tui.sim.runner import run_argv

    argv = list(getattr(args, "trainer_args", []) or [])
    console = SimConsole(None)
    try:
        return run_argv(argv, console, in_process=False)
    except KeyboardInterrupt:
        # The traceback is already on stderr; die by SIGINT like an uncaught KeyboardInterrupt.
        sys.stdout.flush()
        sys.stderr.flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        return 130
