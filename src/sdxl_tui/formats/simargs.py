"""The simulator's own options (``--sim-*``), split off before the trainer's are parsed.

Why in the bottom layer: ``sdxl-tui simulate`` takes a real trainer command line plus these
knobs, and the preflight check must tell them apart from the trainer's options without
importing the simulator (the check is used on real runs too).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

__all__ = ["FAULTS", "SCRIPTS", "SimOptions", "build_sim_parser", "split_args"]

FAULTS = ("oom", "nan", "hang", "crash")
#: Which trainer the simulator is: SDXL's ``sdxl_train_network.py`` or SD1.5's ``train_network.py``.
SCRIPTS = ("sdxl_train_network.py", "train_network.py")


@dataclass(frozen=True)
class SimOptions:
    """The simulator's own knobs (``--sim-*``); everything else is the trainer's."""

    step_seconds: float = 0.5
    startup_seconds: float = 1.0
    batches_per_epoch: int | None = None
    fault: str | None = None
    fault_step: int = 1
    hang_seconds: float = 0.0  # 0 = forever (a real hang); >0 ends the hang (in-process tests)
    real_size: bool = False
    seed: int = 42
    hostname: str | None = None
    script: str = SCRIPTS[0]

    @property
    def sd1(self) -> bool:
        """The simulated trainer is SD1.5's ``train_network.py`` (512, one text encoder)."""
        return self.script == SCRIPTS[1]


def build_sim_parser() -> argparse.ArgumentParser:
    """Parser for the ``--sim-*`` options only (exact names, no abbreviations)."""
    p = argparse.ArgumentParser(prog="sdxl-tui simulate", add_help=False, allow_abbrev=False)
    p.add_argument("--sim-step-seconds", type=float, default=SimOptions.step_seconds)
    p.add_argument("--sim-startup-seconds", type=float, default=SimOptions.startup_seconds)
    p.add_argument("--sim-batches-per-epoch", type=int, default=None)
    p.add_argument("--sim-fault", choices=FAULTS, default=None)
    p.add_argument("--sim-fault-step", type=int, default=SimOptions.fault_step)
    p.add_argument("--sim-hang-seconds", type=float, default=0.0)
    p.add_argument("--sim-real-size", action="store_true")
    p.add_argument("--sim-seed", type=int, default=SimOptions.seed)
    p.add_argument("--sim-hostname", default=None)
    p.add_argument("--sim-script", choices=SCRIPTS, default=SCRIPTS[0])
    return p


def split_args(argv: list[str]) -> tuple[SimOptions, list[str]]:
    """Separate ``--sim-*`` options from the trainer's; raises SystemExit(2) on bad sim values."""
    ns, rest = build_sim_parser().parse_known_args(argv)
    sim = SimOptions(
        step_seconds=max(0.0, ns.sim_step_seconds),
        startup_seconds=max(0.0, ns.sim_startup_seconds),
        batches_per_epoch=ns.sim_batches_per_epoch,
        fault=ns.sim_fault,
        fault_step=max(0, ns.sim_fault_step),
        hang_seconds=max(0.0, ns.sim_hang_seconds),
        real_size=ns.sim_real_size,
        seed=ns.sim_seed,
        hostname=ns.sim_hostname,
        script=ns.sim_script,
    )
    return sim, rest
