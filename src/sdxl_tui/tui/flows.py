"""The dashboard's action flows (start, kill, stop after checkpoint, evaluate, compare): a
dialog, then the work in a thread, then the outcome as a notification.

A base class of the App: the flows need the App's screens, workers and notifications, and
keeping them here leaves ``app.py`` the state and the layout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import App

from sdxl_tui.tui import actions
from sdxl_tui.tui.messages import ActionFinished, ActionOutcome
from sdxl_tui.tui.screens.compare import CompareScreen
from sdxl_tui.tui.screens.confirm import ConfirmScreen
from sdxl_tui.tui.screens.images import ImageScreen
from sdxl_tui.tui.widgets.progress import short_checkpoint

if TYPE_CHECKING:
    from sdxl_tui.config import Settings
    from sdxl_tui.model import RunSnapshot
    from sdxl_tui.tui.feeds import Feeds


class ActionFlows(App[int]):
    """Start, kill, stop-after-checkpoint, evaluate and compare, as the dashboard runs them."""

    if TYPE_CHECKING:  # set by the App (the reactives are declared there)
        settings: Settings
        run_dir: str
        launch_file: str | None
        feeds: Feeds
        compare_poll: float
        snapshot: RunSnapshot | None
        stop_armed: bool
        stop_pending: str

        @property
        def trainer_alive(self) -> bool: ...

        def selected(self) -> Any: ...

        def _refuse(self, action: str) -> bool: ...

    # ------------------------------------------------------------------ keys

    def action_start_run(self) -> None:
        if not self._refuse("start_run"):
            self._start_flow()

    def action_kill_run(self) -> None:
        if not self._refuse("kill_run"):
            self._kill_flow()

    def action_stop_after_checkpoint(self) -> None:
        if not self._refuse("stop_after_checkpoint"):
            self._stop_flow()

    def action_evaluate_checkpoint(self) -> None:
        if not self._refuse("evaluate_checkpoint"):
            ckpt = self.selected()
            assert ckpt is not None
            self._eval_flow(ckpt.path)

    def action_compare_checkpoints(self) -> None:
        if not self._refuse("compare_checkpoints"):
            self._compare_flow()

    def _poll_stop_watcher(self) -> None:
        """A stop-after-checkpoint armed here or by `sdxl-tui kill --after-checkpoint`."""
        snap = self.snapshot
        if snap is not None and snap.state.is_over and not self.stop_armed:
            return
        self.run_worker(self._stop_watcher_thread, thread=True, group="stop-poll", exclusive=True, exit_on_error=False)

    def _stop_watcher_thread(self) -> None:
        try:
            armed = actions.stop_status(self.run_dir)
        except Exception:  # noqa: BLE001 - the header line is a nicety; never a crash
            return
        self.call_from_thread(setattr, self, "stop_armed", armed)

    def watch_stop_armed(self) -> None:
        self._update_stop_pending()

    def _update_stop_pending(self) -> None:
        if not self.stop_armed:
            self.stop_pending = ""
            return
        snap = self.snapshot
        nxt = snap.progress.next_checkpoint if snap is not None else None
        target = short_checkpoint(nxt, snap.config.output_name) if (snap is not None and nxt) else "the next checkpoint"
        self.stop_pending = f"stopping after {target}"

    async def _propose(self, proposal: actions.Proposal) -> str | None:
        buttons = [*proposal.choices, ("cancel", "Cancel" if proposal.allowed else "Close", "default")]
        return await self.push_screen_wait(ConfirmScreen(proposal.title, proposal.body, list(buttons)))

    async def _blocking(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    def _finished(self, action: str, ok: bool, message: str) -> None:
        self.post_message(ActionFinished(ActionOutcome(action, ok, message)))

    @work(exclusive=True, group="action", exit_on_error=False)
    async def _start_flow(self) -> None:
        try:
            proposal = await self._blocking(actions.plan_start, self.run_dir, self.settings, self.launch_file)
        except Exception as exc:  # noqa: BLE001 - an action's failure is shown, never a crash
            self._finished("start", False, str(exc))
            return
        if await self._propose(proposal) != "start":
            return
        self.notify("starting the training…", timeout=4)
        ok, text = await self._blocking(actions.do_start, proposal.plan)
        self._finished("start", ok, text)
        self.feeds.wake.set()

    @work(exclusive=True, group="action", exit_on_error=False)
    async def _kill_flow(self) -> None:
        try:
            proposal = await self._blocking(actions.plan_kill, self.run_dir)
        except Exception as exc:  # noqa: BLE001 - an action's failure is shown, never a crash
            self._finished("kill", False, str(exc))
            return
        if await self._propose(proposal) != "kill":
            self.notify("kill cancelled: the training continues", timeout=4)
            return
        self.notify("stopping the training (SIGINT, then SIGTERM, then SIGKILL)…", timeout=6)
        ok, text = await self._blocking(actions.do_kill, proposal.plan, self.settings)
        self._finished("kill", ok, text)
        self.feeds.wake.set()

    @work(exclusive=True, group="action", exit_on_error=False)
    async def _stop_flow(self) -> None:
        try:
            armed = await self._blocking(actions.stop_status, self.run_dir)
            if armed:
                choice = await self._propose(
                    actions.Proposal(
                        "Stop after the next checkpoint is armed",
                        "A watcher will stop the training once its next checkpoint is complete.\nCancel it?",
                        True,
                        choices=(("disarm", "Cancel the stop", "warning"),),
                    )
                )
                if choice != "disarm":
                    return
                ok, text = await self._blocking(
                    lambda: actions.do_stop_after_checkpoint(self.run_dir, self.settings, cancel=True)
                )
                self.stop_armed = not ok
            else:
                snap = self.snapshot
                nxt = snap.progress.next_checkpoint if snap else None
                choice = await self._propose(
                    actions.Proposal(
                        "Stop after the next checkpoint?",
                        "The training keeps running until its next checkpoint file is complete, then it is stopped\n"
                        "(SIGINT, then SIGTERM). Nothing saved is lost."
                        + (f"\n\nnext checkpoint: {nxt}" if nxt else ""),
                        True,
                        choices=(("arm", "Stop after checkpoint", "warning"),),
                    )
                )
                if choice != "arm":
                    return
                ok, text = await self._blocking(lambda: actions.do_stop_after_checkpoint(self.run_dir, self.settings))
                self.stop_armed = ok
        except Exception as exc:  # noqa: BLE001 - an action's failure is shown, never a crash
            self._finished("stop after checkpoint", False, str(exc))
            return
        self._finished("stop after checkpoint", ok, text)

    @work(exclusive=True, group="action", exit_on_error=False)
    async def _eval_flow(self, checkpoint: str) -> None:
        alive = self.trainer_alive
        try:
            proposal = await self._blocking(
                lambda: actions.plan_evaluation(self.run_dir, checkpoint, self.settings, trainer_alive=alive)
            )
        except Exception as exc:  # noqa: BLE001 - an action's failure is shown, never a crash
            self._finished("evaluate", False, str(exc))
            return
        choice = await self._propose(proposal)
        if choice not in ("now", "after-training"):
            return
        try:
            ok, text = await self._blocking(actions.do_evaluation, proposal.plan, choice)
        except Exception as exc:  # noqa: BLE001 - an action's failure is shown, never a crash
            ok, text = False, f"{type(exc).__name__}: {exc}"
        self._finished("evaluate", ok, text)
        self.feeds.wake.set()

    @work(exclusive=True, group="compare", exit_on_error=False)
    async def _compare_flow(self) -> None:
        """Dialog -> queue (thread) -> progress notifications -> the grid on the image screen.

        The evaluations and the grid are built by the detached queue runner: quitting the
        dashboard does not stop them; this worker only follows the status files.
        """
        snap = self.snapshot
        if snap is None:
            return
        screen = CompareScreen(
            actions.default_compare_selection(snap), actions.compare_choices(snap), training=self.trainer_alive
        )
        answer = await self.push_screen_wait(screen)
        if answer is None:
            return
        selection, when = answer
        try:
            job = await self._blocking(actions.do_compare, self.run_dir, selection, self.settings, when)
        except Exception as exc:  # noqa: BLE001 - an action's failure is shown, never a crash
            self._finished("compare", False, str(exc))
            return
        reused = len(job.names) - len(job.started)
        self.notify(
            f"{len(job.names)} checkpoints: {len(job.started)} evaluations queued"
            + (f", {reused} reused" if reused else "")
            + f"\ngrid: {job.grid_path}",
            title=f"compare {job.label}",
            timeout=8,
        )
        self.feeds.wake.set()
        last = -1
        while True:
            progress = await self._blocking(actions.compare_progress, self.run_dir, job)
            if progress.status == "done":
                self._finished("compare", True, f"grid saved: {progress.grid_path}")
                self.push_screen(ImageScreen(f"compare {job.label}", [progress.grid_path]))
                return
            if progress.status in ("failed", "missing"):
                self._finished("compare", False, f"comparison {job.label} failed: {progress.error}")
                return
            if progress.done != last and progress.total:
                last = progress.done
                if progress.done:
                    self.notify(
                        f"{progress.done}/{progress.total} evaluations done", title=f"compare {job.label}", timeout=6
                    )
            await asyncio.sleep(self.compare_poll)
