"""The run's state: a pure function of plain facts (:func:`decide_state`).

State precedence (first match wins; :func:`decide_state`):

1. ``MISSING``     the directory does not exist (yet, or any more); ``UNREADABLE`` it exists
                   but may not be read (permission denied).
2. ``FINISHED``    ``model saved.`` was logged, or the final ``{output_name}.safetensors`` is
                   complete and the run is not visibly still training towards it.
3. ``STOPPED``     the user asked for the stop (``sdxl-tui kill``, the dashboard, stop-after-
                   checkpoint: the stop record, ``sources/stops.py``) and the trainer is
                   gone, whatever its exit: real sd-scripts interrupted in its loop exits 1
                   (KeyboardInterrupt), ``accelerate launch`` turns any child exit into 1, a
                   wrapper may exit 130, 143 or 254. Only an OOM or rejected arguments win.
   ``FAILED``      an error ended the run: CUDA OOM, a traceback (not KeyboardInterrupt),
                   ``unrecognized arguments``, host OOM evidence, or a non-zero exit status in
                   the run record; with the process gone (or still exiting).
4. ``INTERRUPTED`` the process is gone (process table or run record; or, without process
                   information, the log has been silent for long) with no final checkpoint and
                   no error: Ctrl-C (``SIGINT``), SIGTERM, SIGKILL, reboot.
5. ``STALLED``     the process lives (or the log is fresh without process information) in a
                   training phase, but nothing was written for ``alerts.stall_factor`` x the
                   usual seconds per step (at least 120 s).
6. ``LOADING`` / ``CACHING`` / ``TRAINING`` / ``SAMPLING`` / ``SAVING``: the log's phase while
                   the process lives or the log is fresh.
7. ``WAITING``     the directory exists but nothing has been written and no trainer runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from sdxl_tui.humanize import format_ago
from sdxl_tui.model import RunState

__all__ = ["StateInputs", "decide_state", "stall_threshold"]

#: A stall needs at least this long without any write, whatever the step time.
MIN_STALL_SECONDS = 120.0
#: Without a step time, a live-looking run is presumed stopped after this much silence.
DEFAULT_SILENCE_SECONDS = 600.0
#: A fresh log with no trainer process found counts as live for at most this long (a trainer in
#: another PID namespace, a scan racing a restart); once steps are timed, 3 steps (>= 15 s).
NOT_FOUND_GRACE_SECONDS = 60.0
MIN_NOT_FOUND_SECONDS = 15.0

_PHASE_STATES = {
    "loading": RunState.LOADING,
    "caching": RunState.CACHING,
    "training": RunState.TRAINING,
    "sampling": RunState.SAMPLING,
    "saving": RunState.SAVING,
}


@dataclass(frozen=True, slots=True)
class StateInputs:
    """What :func:`decide_state` looks at: plain facts, so tests can hand-build them."""

    now: float
    exists: bool = True
    readable: bool = True
    has_output: bool = False  # a log, an event file or a checkpoint exists
    has_log: bool = False
    phase: str | None = None  # LogFacts.phase
    step: int | None = None
    total_steps: int | None = None
    model_saved: bool = False
    final_complete: bool = False
    final_name: str | None = None
    traceback: str | None = None
    keyboard_interrupt: bool = False
    oom: str | None = None
    host_oom: str | None = None
    unrecognized_args: tuple[str, ...] = ()
    process_known: bool = True  # False with --no-procs: liveness is guessed from the log age
    alive: bool | None = None  # True: trainer found alive; False: known gone; None: not found
    pid: int | None = None
    exit_code: int | None = None  # from the run record
    exit_signal: int | None = None
    last_write_at: float | None = None  # newest log/event/checkpoint write
    seconds_per_step: float | None = None
    stall_factor: float = 10.0
    #: The trainer was seen alive before (an earlier snapshot, or the run record of the run
    #: sdxl-tui started): not finding it now means it is gone, at once.
    seen_alive: bool = False
    #: The stop the user asked for that explains the end (``sources/stops.describe_stop``).
    stopped: str | None = None
    final_problem: str | None = None  # the final file exists but is empty/truncated


def stall_threshold(seconds_per_step: float | None, factor: float) -> float:
    """Seconds without a write that make a live run STALLED (and a silent one presumed gone)."""
    if seconds_per_step and seconds_per_step > 0:
        return max(MIN_STALL_SECONDS, factor * seconds_per_step)
    return DEFAULT_SILENCE_SECONDS


def _signame(sig: int | None) -> str:
    import signal

    try:
        return signal.Signals(sig).name if sig is not None else "?"
    except ValueError:
        return f"signal {sig}"


def _liveness(s: StateInputs, age: float | None, threshold: float, pid: str) -> tuple[bool, str]:
    """Is the trainer still there, and how do we know?  alive=True: seen; False: known gone;
    None: not found."""
    if s.alive is True:
        return True, f"{pid} is alive"
    if s.alive is False or s.exit_code is not None or s.exit_signal is not None:
        if s.exit_signal is not None:
            return False, f"{pid} was killed by {_signame(s.exit_signal)}"
        if s.exit_code is not None:
            return False, f"{pid} exited with status {s.exit_code}"
        return False, f"{pid} has exited"
    # Not found. Without process information the log's age is all there is; with it, a
    # fresh log still counts for a short while (a trainer in another PID namespace, a
    # scan racing a restart), never for a whole stall threshold.
    window = threshold if not s.process_known else _not_found_window(s.seconds_per_step, threshold)
    fresh = age is not None and age < window and not (s.process_known and s.seen_alive)
    who = "no process info (--no-procs)" if not s.process_known else "trainer process not found"
    if s.process_known and s.seen_alive:
        who = f"{pid} is gone (no exit status: killed with SIGKILL, or its supervisor was killed too)"
    live = fresh and not (s.keyboard_interrupt or s.traceback)  # a final traceback ends it
    if live and s.process_known and s.stopped is not None:
        live = False  # the user's stop, and its trainer is not found: no grace needed
    return live, f"{who}; log written {format_ago(age)} ago" if age is not None else who


def decide_state(s: StateInputs) -> tuple[RunState, str]:
    """The run's state and a one-line reason, by the precedence in the module docstring."""
    if not s.exists:
        return RunState.MISSING, "the run directory does not exist (yet)"
    if not s.readable:
        return RunState.UNREADABLE, "cannot read the run directory: permission denied"

    age = None if s.last_write_at is None else max(0.0, s.now - s.last_write_at)
    threshold = stall_threshold(s.seconds_per_step, s.stall_factor)
    pid = f"PID {s.pid}" if s.pid is not None else "the trainer"

    live, how = _liveness(s, age, threshold, pid)

    # 2. finished
    if s.model_saved and s.final_problem:
        return RunState.FAILED, (f"'model saved.' logged, but the final {s.final_name or 'model'} is unusable "
                                 f"({s.final_problem})")
    if s.model_saved:
        return RunState.FINISHED, f"'model saved.' logged{_final(s.final_name)}"
    if s.final_complete and not (live and s.step is not None and s.total_steps and s.step < s.total_steps):
        return RunState.FINISHED, f"final checkpoint complete{_final(s.final_name)}"

    # 3. failed (an error line ends the run even if the process is still tearing down)
    error = None
    if s.unrecognized_args:
        error = "the trainer rejected its arguments: unrecognized arguments: " + " ".join(s.unrecognized_args)
    elif s.oom:
        error = "CUDA out of memory"
    elif s.host_oom:
        error = "host out of memory"
    elif s.traceback and not s.keyboard_interrupt:
        error = f"crashed: {s.traceback.strip()[:160]}"
    # a stop the user asked for: whatever status the trainer or its wrapper exited with, and
    # whatever traceback a launcher printed about it (accelerate: CalledProcessError)
    if not live and s.stopped is not None and not (s.unrecognized_args or s.oom or s.host_oom):
        return RunState.STOPPED, f"stopped by you ({s.stopped}){_at(s.step)}"
    if error is not None:
        tail = " (process still exiting)" if s.alive is True else ""
        return RunState.FAILED, f"{error}{_at(s.step)}; {how}{tail}"
    if not live and s.exit_code not in (None, 0) and s.exit_signal is None:
        return RunState.FAILED, f"{how}{_at(s.step)}, without the final checkpoint"

    # 4. interrupted
    if not live and (s.has_output or s.alive is False or s.exit_code is not None or s.exit_signal is not None):
        if s.keyboard_interrupt:
            return RunState.INTERRUPTED, f"SIGINT (KeyboardInterrupt){_at(s.step)}; {how}; no final checkpoint"
        if s.exit_code == 0:
            return RunState.INTERRUPTED, f"{how}{_at(s.step)} but wrote no final checkpoint (see the log's errors)"
        if s.exit_signal is None and s.exit_code is None:
            return RunState.INTERRUPTED, f"ended unexpectedly{_at(s.step)}; no final checkpoint; {how}"
        return RunState.INTERRUPTED, f"{how}{_at(s.step)}; no final checkpoint"
    if not live:
        return RunState.WAITING, "no output yet and no trainer running"

    # 5./6. live
    phase_state = _PHASE_STATES.get(s.phase or "")
    if s.phase == "finished":
        return RunState.SAVING, f"training loop done, final save in progress; {how}"
    if phase_state is None:
        phase_state = RunState.LOADING
    if phase_state in (RunState.TRAINING, RunState.SAMPLING, RunState.SAVING) and age is not None and age >= threshold:
        usual = f" (usual {s.seconds_per_step:.1f} s/step)" if s.seconds_per_step else ""
        return RunState.STALLED, f"nothing written for {format_ago(age)}{usual}{_at(s.step)}; {how}"
    if not s.has_log:
        return phase_state, f"{how}; no log yet"
    return phase_state, how


def _at(step: int | None) -> str:
    return f" at step {step}" if step is not None else ""


def _final(name: str | None) -> str:
    return f" ({name})" if name else ""


def _not_found_window(seconds_per_step: float | None, threshold: float) -> float:
    if seconds_per_step and seconds_per_step > 0:
        return min(threshold, NOT_FOUND_GRACE_SECONDS, max(MIN_NOT_FOUND_SECONDS, 3 * seconds_per_step))
    return min(threshold, NOT_FOUND_GRACE_SECONDS)
