"""`sdxl-tui status DIR [--json]`: what a run directory says, once, for people or scripts.

Why a headless twin of the dashboard: over SSH, in cron, in a shell prompt or a notifier, one
snapshot is what is wanted; it is the same ``RunReader`` the dashboard uses, so both always
agree. Module-level imports stay light (``--help`` must not import the readers).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from typing import Any

#: One snapshot, written and flushed: the process may skip the interpreter's teardown
#: (``cli.entry``).
QUICK_EXIT = True

DESCRIPTION = """\
Read a kohya-ss sd-scripts run directory (the trainer's --output_dir) once and print its
state: waiting, loading, caching, training, sampling, saving, finished, failed, interrupted
or stalled, with the reason; epoch and step, step rate, ETA (as a duration and a clock
time) and the next checkpoint; the last loss; every checkpoint with its status; the trainer
process; the GPUs; and alerts, each with a fix fitted to this run. A run resumed with
--resume is read at its true steps: each launch, the step of the state it went on from, the
steps a later launch redid (discarded), and each checkpoint's launch.

Sources: DIR/training.log (or --log), TensorBoard event files under DIR and the trainer's
--logging_dir (or --logs), *.safetensors headers, -state dirs, sample/, eval_*, the process
table (the trainer is found by its --output_dir) and NVML. Nothing in DIR is modified."""

EPILOG = """\
examples:
  sdxl-tui status /mnt/data/ai_data/models/lora/luca/sdxl_v1
  sdxl-tui status DIR --json | jq '.state, .eta_seconds, .loss.current'
  sdxl-tui status DIR --no-gpu --no-procs      # only the files (liveness from the log age)
  sdxl-tui status DIR --watch --interval 10    # follow it as text (no terminal needed); Ctrl+C

--json prints one object (schema version 1, documented in the README): state,
state_reason, epoch, epochs, step, total_steps, eta_seconds, eta_at, loss {current,
average}, config, checkpoints [...], samples, evaluations, process (or null), scheduler
(a Slurm run's job: job_id, state, reason, node, time_limit, elapsed...; null for local runs),
queue [...] (the night's queue, see `sdxl-tui queue`), gpus [...],
alerts [{kind, severity, message, fix, key}], problems.

a folder of runs (DIR holds runs below it, e.g. luca/ with optimization_overnight/, sdxl_v1/,
sdxl_v2/; found up to 3 levels down, symlinks not followed): one row per run (name, kind
SDXL/SD1.5, state, progress, ETA, last and best loss, checkpoints, PID, age, last alert), live
first, then each optimisation folder's best trial and CONVERGENCE_ALERT.txt. --json prints
{"runs": [{run_dir, name, kind, state, step, total_steps, loss, best_loss, ...}], "trials":
{dir, count, best {trial, params, score}, convergence_alert, ...} or null, "optimisations":
[...]}. A run that holds other runs is shown as one run, the others listed after it.

exit status:
  0  the directory was read (whatever the run's state: check "state" for failed runs);
     --watch: ended with Ctrl+C
  1  the directory exists but could not be read (permission denied)
  2  no such directory, not a directory, not empty but holding no sd-scripts run, a bad
     --config file, or bad usage"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR", help="the run directory (the trainer's --output_dir)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--log", metavar="FILE", help="the console log (default: DIR/training.log)")
    parser.add_argument("--logs", metavar="DIR", dest="logs_dir",
                        help="TensorBoard directory (default: DIR and the trainer's --logging_dir)")
    parser.add_argument("--no-gpu", action="store_true", help="do not query NVML")
    parser.add_argument("--no-procs", action="store_true",
                        help="do not scan the process table (liveness is guessed from the log's age)")
    parser.add_argument("--config", metavar="FILE", help="sdxl-tui settings TOML (stall factor, GPU temperature)")
    parser.add_argument("--launch", metavar="FILE", help="launch config TOML (default: DIR/sdxl-tui.toml)")
    parser.add_argument("--no-cache", action="store_true",
                        help="read every event file from its start and leave the cache alone "
                             "(default: start from $XDG_CACHE_HOME/sdxl-tui, setting cache.enabled)")
    parser.add_argument("--single", action="store_true",
                        help="read DIR as one run even when it holds other runs (see 'a folder of runs' below)")
    from sdxl_tui.commands import status_watch

    status_watch.add_arguments(parser)


def _err(message: str) -> None:
    print(f"sdxl-tui status: {message}", file=sys.stderr)


def _prefetch_events(run_dir: str, logs_dir: str | None, settings: Any) -> Any:
    """An ``EventReader`` for the default roots (from the cache if any), its first read started
    in a child process."""
    try:
        from sdxl_tui.sources.cache import event_cache
        from sdxl_tui.sources.events import EventReader

        roots = [logs_dir if logs_dir else run_dir]
        cache = event_cache(roots, EventReader.DEFAULT_MAX_POINTS, settings) if settings is not None else None
        reader = EventReader(roots, cache=cache)
        reader.prefetch()
    except Exception:  # noqa: BLE001 - an optimisation only: read_run reads them anyway
        return None
    return reader


def _settings(args: argparse.Namespace) -> Any:
    """The settings, or the ConfigError that says why not."""
    from sdxl_tui.config import ConfigError, load_settings

    try:
        return load_settings(config_path=args.config)
    except ConfigError as exc:
        return exc


def run(args: argparse.Namespace) -> int:
    # One short-lived snapshot: the cyclic garbage collector would only re-scan the tens of
    # thousands of points and tokens the readers build (about a tenth of a cold status);
    # reference counting still frees everything as usual.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    events = None
    try:
        run_dir = os.path.abspath(os.path.expanduser(args.dir))
        problem = _check_dir(run_dir, args.dir)
        if problem is not None:
            return problem
        settings = None if getattr(args, "watch", False) else _settings(args)
        if settings is not None and not isinstance(settings, Exception):
            # Start decoding the event files on the second core before the other readers
            # are imported: it is most of a cold status and needs nothing else (see
            # EventReader.prefetch). A folder of runs, or a run holding runs, drops it.
            use_cache = settings.cache.enabled and not args.no_cache
            events = _prefetch_events(run_dir, args.logs_dir, settings if use_cache else None)
        return _run(args, run_dir, settings, events)
    finally:
        if events is not None:
            events.close()
        if gc_was_enabled:
            gc.enable()


def _check_dir(run_dir: str, given: str) -> int | None:
    """The exit status for a DIR that cannot be read at all, or None."""
    if not os.path.exists(run_dir):
        _err(f"no such directory: {given}")
        return 2
    if not os.path.isdir(run_dir):
        _err(f"not a directory: {given}")
        return 2
    if not os.access(run_dir, os.R_OK | os.X_OK):
        _err(f"cannot read {given}: permission denied")
        return 1
    return None


def _run(args: argparse.Namespace, run_dir: str, settings: Any, events: Any) -> int:
    below: tuple[str, ...] = ()
    if not (args.log or args.logs_dir or getattr(args, "single", False)):
        from sdxl_tui.commands.runs_status import route

        decided = route(run_dir, args)  # a folder of runs is printed there; a run holding runs: its logs/ only
        if isinstance(decided, int):
            return decided
        below = decided
    if getattr(args, "watch", False):
        from sdxl_tui.commands import status_watch

        problem = status_watch.check_arguments(args)
        if problem:
            _err(problem)
            return 2
        return status_watch.watch(args, run_dir, format_status)
    if isinstance(settings, Exception):
        _err(str(settings))
        return 2
    use_cache = settings.cache.enabled and not args.no_cache
    if events is not None and below:
        events.close()  # read for DIR; a run holding runs reads its own logs/ only
        events = _prefetch_events(run_dir, args.logs_dir, settings if use_cache else None)
    try:
        from sdxl_tui.sources.rundir import read_run

        try:
            snap = read_run(
                run_dir,
                log_path=args.log,
                logs_dir=args.logs_dir,
                gpu=not args.no_gpu,
                procs=False if args.no_procs else None,
                settings=settings,
                launch_file=getattr(args, "launch", None),
                event_reader=events,
                cache=use_cache,
            )
        except OSError as exc:  # the readers report I/O trouble as problems; this is a last resort
            _err(f"cannot read {args.dir}: {exc.strerror or exc}")
            return 1
    finally:
        if events is not None:
            events.close()
    _write(snap, args, below)
    return 0


def _write(snap: Any, args: argparse.Namespace, below: tuple[str, ...]) -> None:
    """The snapshot as JSON or text, and the runs inside this run (if any)."""
    if args.json:
        from sdxl_tui.sources.snapshot_json import snapshot_to_json

        data = snapshot_to_json(snap)
        if below:
            data["runs_below"] = list(below)
        # one string, one write: json.dump writes each token separately (thousands of calls)
        sys.stdout.write(json.dumps(data, indent=1, ensure_ascii=False))
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_status(snap))
        if below:
            sys.stdout.write("runs below  " + ", ".join(below) + "  (open one with its own path)\n")
    sys.stdout.flush()


# ---------------------------------------------------------------------------------- text


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit in ("B", "KB") else f"{value:.1f} {unit}"
        value /= 1000
    return "?"  # pragma: no cover


def _num(v: float | None, fmt: str = "{:.4g}") -> str:
    if v is None:
        return "-"
    return fmt.format(v)


def _clock(ts: float | None, now: float) -> str:
    if ts is None:
        return "?"
    lt = time.localtime(ts)
    same_day = time.localtime(now)[:3] == lt[:3]
    return time.strftime("%H:%M" if same_day else "%a %H:%M", lt)


def _split_fix(fix: str) -> list[str]:
    """Split "a; b (c; d); e" at top-level "; " only: one remedy per line."""
    parts: list[str] = []
    depth = 0
    start = 0
    for i, ch in enumerate(fix):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth = max(0, depth - 1)
        elif ch == ";" and depth == 0 and fix[i + 1 : i + 2] == " ":
            parts.append(fix[start:i].strip())
            start = i + 2
    parts.append(fix[start:].strip())
    return [p for p in parts if p]


def _scheduler_line(s: Any, now: float) -> str:
    """``job 12 RUNNING on gpu07, 0:42:10 of 1-00:00:00`` (the Slurm job of the run)."""
    from sdxl_tui.formats.slurm import format_time_limit

    bits = [f"job {s.job_id}" + (f" on cluster {s.cluster}" if s.cluster else ""), s.state or "state unknown"]
    if s.reason and s.state not in ("RUNNING", "COMPLETED"):
        bits.append(f"({s.reason})")
    if s.queue_position:
        bits.append(f"#{s.queue_position} in the queue")
    if s.node:
        bits.append(f"on {s.node}")
    if s.elapsed is not None:
        bits.append(f"{format_time_limit(s.elapsed)} of {format_time_limit(s.time_limit)}")
    if s.exit_code is not None or s.exit_signal is not None:
        bits.append(f"exit {s.exit_code}" if s.exit_code is not None else f"signal {s.exit_signal}")
    if s.problem:
        bits.append(f"- {s.problem}")
    return " ".join(bits)


def _progress_lines(snap: Any) -> list[str]:
    """The progress and ETA lines."""
    from sdxl_tui.humanize import format_duration
    from sdxl_tui.sources.progress import run_elapsed

    p = snap.progress
    out: list[str] = []
    if p.step is not None or p.epoch is not None:
        parts = []
        if p.epoch is not None or p.epochs is not None:
            parts.append(f"epoch {p.epoch if p.epoch is not None else '?'}/{p.epochs if p.epochs is not None else '?'}")
        if p.step is not None:
            frac = f" ({p.fraction * 100:.1f}%)" if p.fraction is not None else ""
            parts.append(f"step {p.step}/{p.total_steps if p.total_steps else '?'}{frac}")
        if p.seconds_per_step:
            parts.append(f"{p.seconds_per_step:.2f} s/step")
        elapsed = run_elapsed(snap)  # the run's own timestamps (tqdm's stays near 0 at short steps)
        if elapsed is not None:
            parts.append(f"elapsed {format_duration(elapsed)}")
        out.append("progress    " + "  ".join(parts))
    if p.eta_seconds is not None or p.next_checkpoint:
        eta = ""
        if p.eta_seconds is not None:
            eta = f"{format_duration(p.eta_seconds)} (done at {_clock(p.eta_at, snap.taken_at)})"
        nxt = ""
        if p.next_checkpoint:
            nxt = f"next: {p.next_checkpoint}"
            if p.next_checkpoint_eta_seconds is not None:
                nxt += f" in {format_duration(p.next_checkpoint_eta_seconds)}"
        out.append("eta         " + "   ".join(x for x in (eta, nxt) if x))
    return out


def _launch_lines(snap: Any) -> list[str]:
    """A resumed run's launches (sources/launches.py) and its discarded branch."""
    from sdxl_tui.sources.launches import describe_launch

    if not snap.launches:
        return []
    out = [f"launches    {len(snap.launches)}"]
    out.extend(f"  #{la.index + 1}  {describe_launch(la)}" for la in snap.launches)
    return out


def _loss_line(snap: Any) -> list[str]:
    losses = []
    src = ""
    for label, tag in (("current", "loss/current"), ("average", "loss/average"), ("epoch", "loss/epoch_average")):
        s = snap.series.get(tag)
        if s is not None and s.last is not None:
            losses.append(f"{label} {s.last.value:.4g}")
            src = s.source
    return ["loss        " + "  ".join(losses) + f"  ({src})"] if losses else []


def _config_line(c: Any) -> list[str]:
    cfg = []
    if c.base_model_version or c.resolution:
        cfg.append(" ".join(x for x in (c.base_model_version, c.resolution) if x))
    if c.network_dim is not None:
        alpha = f"/alpha {c.network_alpha:g}" if c.network_alpha is not None else ""
        cfg.append(f"dim {c.network_dim}{alpha}")
    lr = c.unet_lr or c.learning_rate
    if lr:
        cfg.append(f"lr {lr:g}" + (f" te {c.text_encoder_lr:g}" if c.text_encoder_lr else ""))
    if c.optimizer:
        cfg.append(c.optimizer.rsplit(".", 1)[-1])
    if c.scheduler:
        cfg.append(c.scheduler)
    if c.batch_size or c.gradient_accumulation_steps:
        cfg.append(f"batch {c.batch_size or '?'} x accum {c.gradient_accumulation_steps or '?'}")  # never invented
    if c.mixed_precision:
        cfg.append("fp32" if c.mixed_precision == "no" else c.mixed_precision)
    return ["config      " + "  ".join(cfg)] if cfg else []


def _checkpoint_lines(snap: Any) -> list[str]:
    if not snap.checkpoints:
        return ["checkpoints none yet"]
    out = [f"checkpoints {len(snap.checkpoints)}"]
    width = max(len(ck.name) for ck in snap.checkpoints)
    for ck in snap.checkpoints:
        loss = f"loss {ck.loss_at_save:.4g}" if ck.loss_at_save is not None else ""
        if loss and ck.loss_step is not None and ck.step is not None and ck.loss_step < ck.step:
            loss += f" (older: step {ck.loss_step}; the events end before the save)"
        ep = f"e{ck.epoch}" if ck.epoch is not None else ""
        st = f"s{ck.step}" if ck.step is not None else ""
        extra = f"  {ck.problem}" if ck.problem else ""
        if ck.launch is not None and snap.launches:
            own = f" (ss_steps {ck.trainer_step})" if ck.trainer_step is not None else ""
            extra += f"  launch #{ck.launch + 1}{own}"
        out.append(
            f"  {ck.name:<{width}}  {ck.kind.value:<5} {ep:>4} {st:>7}  {_size(ck.size):>9}  "
            f"{ck.status.value:<8} {loss}{extra}".rstrip()
        )
    return out


def _process_line(tree: Any) -> str:
    """``process     PID 4242, alive, CPU 98%, RSS 9.1 GB  (command)``; a multi-process launch
    names its ranks (rank 0's PID first: its exit and output count)."""
    if tree is None:
        return "process     none found"
    t = tree.trainer
    bits = [f"PID {t.pid}", "alive" if t.alive else "gone"]
    if t.cpu_percent is not None:
        bits.append(f"CPU {t.cpu_percent:.0f}%")
    if t.rss is not None:
        bits.append(f"RSS {_size(t.rss)}")
    if tree.ranks:
        bits.append(f"{len(tree.trainers)} ranks (PIDs {', '.join(str(p.pid) for p in tree.trainers)})")
    if tree.children:
        bits.append(f"{len(tree.children)} children")
    cmd = " ".join(t.cmdline)
    return "process     " + ", ".join(bits) + (f"  ({cmd[:100]}{'…' if len(cmd) > 100 else ''})" if cmd else "")


def _gpu_lines(snap: Any) -> list[str]:
    """One line per GPU, with the run's own VRAM on it: the trainer's, or each rank's."""
    from sdxl_tui.sources.ranks import vram_by_owner, vram_owners

    if not (snap.gpu.available and snap.gpu.gpus):
        return [f"gpu         {snap.gpu.reason or 'none'}"]
    owners = vram_owners(snap.process)
    out = []
    for g in snap.gpu.gpus:
        bits = [f"{g.index} {g.name}"]
        if g.utilization is not None:
            bits.append(f"{g.utilization}% util")
        if g.memory_used is not None and g.memory_total:
            bits.append(f"{g.memory_used / 2**30:.1f}/{g.memory_total / 2**30:.1f} GiB")
        if g.temperature is not None:
            bits.append(f"{g.temperature} C")
        if g.power_draw is not None:
            bits.append(f"{g.power_draw:.0f}" + (f"/{g.power_limit:.0f}" if g.power_limit else "") + " W")
        bits += [f"{owner} {used / 2**30:.1f} GiB" for owner, used in vram_by_owner(g.process_memory, owners)]
        out.append("gpu         " + ", ".join(bits))
    return out


def _alert_lines(snap: Any) -> list[str]:
    if not snap.alerts:
        return []
    out = ["alerts"]
    for a in snap.alerts:
        out.append(f"  {a.severity.value.upper():<7} {a.kind}: {a.message}")
        if a.fix:
            parts = _split_fix(a.fix)
            out.append(f"          fix: {parts[0]}")
            out.extend(f"               {part}" for part in parts[1:])
    return out


def format_status(snap: Any) -> str:
    """The short human summary (a dozen lines plus one per checkpoint, launch and alert)."""
    c = snap.config
    title = c.output_name or os.path.basename(snap.run_dir.rstrip(os.sep))
    out = [f"{title}  {snap.run_dir}", f"state       {snap.state.value}: {snap.state_reason}"]
    out += _progress_lines(snap) + _launch_lines(snap) + _loss_line(snap) + _config_line(c)
    out += _checkpoint_lines(snap)
    if snap.samples:
        out.append(f"samples     {len(snap.samples)} (latest {snap.samples[-1].name})")
    if snap.evaluations:
        out.append("evaluations " + ", ".join(f"{e.name} ({e.status})" for e in snap.evaluations))
    if snap.scheduler is not None:
        out.append("slurm       " + _scheduler_line(snap.scheduler, snap.taken_at))
    out += [_process_line(snap.process), *_gpu_lines(snap)]
    active = [e for e in snap.queue if e.status in ("waiting", "running", "submitted")]
    if active:
        out.append("queue       " + ", ".join(
            f"#{e.id} {e.status} ({os.path.basename(e.output_dir.rstrip('/'))})" for e in active))
    out += _alert_lines(snap)
    return "\n".join(out) + "\n"
