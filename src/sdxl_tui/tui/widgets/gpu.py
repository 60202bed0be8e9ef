"""GPU panel: per GPU a VRAM bar, utilisation, temperature, power, the run's own VRAM (the
trainer's, or each rank's of a multi-process launch) and the VRAM/utilisation history since the
app opened. NVML missing is a normal state."""

from __future__ import annotations

from collections import deque

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from sdxl_tui.model import GpuSample, GpuStatus
from sdxl_tui.sources.ranks import vram_by_owner

SPARK = "▁▂▃▄▅▆▇█"
GIB = 1024**3
HISTORY = 600


def bar(fraction: float | None, width: int) -> Text:
    """A cell bar ``███████░░░`` coloured by how full it is."""
    width = max(1, width)
    if fraction is None:
        return Text("·" * width, style="dim")
    fraction = min(max(fraction, 0.0), 1.0)
    filled = round(fraction * width)
    style = "red" if fraction > 0.95 else "yellow" if fraction > 0.85 else "green"
    return Text("█" * filled, style=style) + Text("░" * (width - filled), style="dim")


def spark(values: list[float], width: int, top: float = 100.0) -> str:
    """Block sparkline of the last ``width`` values scaled to ``top``."""
    vals = values[-width:]
    if not vals:
        return ""
    out = []
    for v in vals:
        i = int(min(max(v / top if top else 0, 0.0), 1.0) * (len(SPARK) - 1))
        out.append(SPARK[i])
    return "".join(out)


def _gib(n: int | None) -> str:
    return "--" if n is None else f"{n / GIB:.1f}"


def _na(v: object, fmt: str) -> str:
    return "N/A" if v is None else fmt.format(v)


def gpu_cell(g: GpuSample, width: int) -> Text:
    """``GPU3  97%  74°C ██████░░ 61.8/80G`` in ``width`` cells (one of many GPUs)."""
    text = Text()
    text.append(f"GPU{g.index:<2}", style="bold")
    text.append(_na(g.utilization, " {:>3}%"))
    temp_style = "bold red" if (g.temperature or 0) >= 85 else ""
    text.append(_na(g.temperature, " {:>3}°C"), style=temp_style)
    if g.throttle_reasons:
        text.append("!", style="bold yellow")
    frac = g.memory_used / g.memory_total if (g.memory_used is not None and g.memory_total) else None
    tail = f" {_gib(g.memory_used)}/{_gib(g.memory_total)}G"
    text.append(" ")
    text.append_text(bar(frac, max(3, width - text.cell_len - len(tail))))
    text.append(tail)
    return text


class GpuPanel(Widget):
    """Renders the latest :class:`GpuStatus`; keeps its own history of the samples it saw."""

    status: reactive[GpuStatus | None] = reactive(None, always_update=True, repaint=False)
    vram_owners: reactive[tuple[tuple[int, str], ...]] = reactive(())
    """(pid, ``trainer`` or ``rank N``) of the run's live processes (``sources/ranks.vram_owners``)."""

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._vram: dict[int, deque[float]] = {}
        self._util: dict[int, deque[float]] = {}
        self._last_taken: float | None = None
        self._lines = 0

    def watch_status(self, status: GpuStatus | None) -> None:
        if status is not None and status.available and status.taken_at != self._last_taken:
            self._last_taken = status.taken_at
            for g in status.gpus:
                if g.memory_used is not None and g.memory_total:
                    self._vram.setdefault(g.index, deque(maxlen=HISTORY)).append(100.0 * g.memory_used / g.memory_total)
                if g.utilization is not None:
                    self._util.setdefault(g.index, deque(maxlen=HISTORY)).append(float(g.utilization))
        lines = len(self.render().plain.splitlines())
        self.refresh(layout=lines != self._lines)  # re-layout only when the height changes
        self._lines = lines

    def render(self) -> Text:
        status = self.status
        width = max(20, self.content_size.width or self.size.width)
        if status is None:
            return Text("GPU: waiting for the first sample", style="dim")
        if not status.available:
            text = Text("no NVIDIA GPU", style="bold yellow")
            if status.reason:
                text.append(f"  {status.reason}", style="dim")
            return text
        text = Text()
        if len(status.gpus) >= 3:  # many GPUs: a cell each, as many per line as fit
            per_line = max(1, (width + 2) // 38)
            cell_w = (width + 2) // per_line - 2
            for n, g in enumerate(status.gpus):
                if n:
                    text.append("\n" if n % per_line == 0 else "  ")
                text.append_text(gpu_cell(g, cell_w))
            return text
        for n, g in enumerate(status.gpus):
            if n:
                text.append("\n")
            self._render_gpu(text, g, width)
        return text

    def _render_gpu(self, text: Text, g: GpuSample, width: int) -> None:
        text.append(f"GPU{g.index} ", style="bold")
        text.append(g.name.replace("NVIDIA ", "").replace("GeForce ", "")[: max(8, width - 38)])
        text.append("  ")
        temp_style = "bold red" if (g.temperature or 0) >= 85 else ""
        text.append(_na(g.temperature, "{}°C"), style=temp_style)
        text.append("  util ")
        text.append(_na(g.utilization, "{:>3}%"))
        text.append("  ")
        if g.power_draw is not None:
            text.append(f"{g.power_draw:.0f}")
            text.append(f"/{g.power_limit:.0f}W" if g.power_limit else "W")
        else:
            text.append("N/A W")
        if g.throttle_reasons:
            text.append("  throttled: " + ",".join(g.throttle_reasons), style="yellow")
        text.append("\n")
        frac = g.memory_used / g.memory_total if (g.memory_used is not None and g.memory_total) else None
        tail = f" {_gib(g.memory_used)}/{_gib(g.memory_total)} GiB"
        for owner, used in vram_by_owner(g.process_memory, self.vram_owners):
            tail += f"  {owner} {_gib(used)}"
        text.append("VRAM ")
        text.append_text(bar(frac, max(6, width - 5 - len(tail))))
        text.append(tail)
        hist_w = max(4, (width - 14) // 2)
        vram = list(self._vram.get(g.index, ()))
        util = list(self._util.get(g.index, ()))
        if vram or util:
            text.append("\nmem ", style="dim")
            text.append(f"{spark(vram, hist_w):<{hist_w}}", style="magenta")
            text.append(" util ", style="dim")
            text.append(spark(util, hist_w), style="green")
