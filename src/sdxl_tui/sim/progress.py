"""A faithful re-implementation of the parts of tqdm that sd-scripts' bars use.

tqdm is not a dependency of sdxl-tui, yet the simulated log must carry the exact bytes tqdm
writes into a redirected stderr: ``\\r`` redraws padded with spaces to the previous length, no
newline until the bar closes, a 10-cell bar (no terminal width in a file), ``{:5.2f}`` rates
that switch from ``it/s`` to ``s/it``, ``{:.3g}`` postfix numbers, ``mininterval`` throttling of
``update`` but not of ``set_postfix``, ``unpause``, nested bars at position 1 (``\\n``, redraw,
cursor-up ``\\x1b[A``) and the final redraw on close. Behaviour follows tqdm 4.67-4.70
``format_meter``/``update``/``close``.
"""

from __future__ import annotations

from collections.abc import Callable
from numbers import Number

UTF_CHARSET = " " + "".join(chr(c) for c in range(0x258F, 0x2587, -1))
CURSOR_UP = "\x1b[A"


def format_interval(t: float) -> str:
    """``[H:]MM:SS`` like ``tqdm.format_interval``."""
    mins, s = divmod(int(t), 60)
    h, m = divmod(mins, 60)
    if h:
        return f"{h:d}:{m:02d}:{s:02d}"
    return f"{m:02d}:{s:02d}"


def format_num(n: float) -> str:
    """tqdm's postfix number format: ``{:.3g}`` unless ``str(n)`` is shorter."""
    f = f"{n:.3g}".replace("+0", "+").replace("-0", "-")
    s = str(n)
    return f if len(f) < len(s) else s


def render_bar(frac: float, width: int = 10, charset: str = UTF_CHARSET) -> str:
    """The meter cells for ``frac`` (0..1)."""
    frac = max(0.0, min(1.0, frac))
    nsyms = len(charset) - 1
    full, part = divmod(int(frac * width * nsyms), nsyms)
    res = charset[-1] * full
    if full < width:
        res = res + charset[part] + charset[0] * (width - full - 1)
    return res


def format_meter(
    n: int,
    total: int | None,
    elapsed: float,
    prefix: str = "",
    postfix: str | None = None,
    rate: float | None = None,
    unit: str = "it",
    charset: str = UTF_CHARSET,
) -> str:
    """One bar line, as ``tqdm.format_meter`` renders it without a known width."""
    if total and n >= total + 0.5:
        total = None
    elapsed_str = format_interval(elapsed)
    if rate is None and elapsed:
        rate = n / elapsed
    inv_rate = 1 / rate if rate else None
    rate_noinv_fmt = (f"{rate:5.2f}" if rate else "?") + unit + "/s"
    rate_inv_fmt = (f"{inv_rate:5.2f}" if inv_rate else "?") + "s/" + unit
    rate_fmt = rate_inv_fmt if inv_rate and inv_rate > 1 else rate_noinv_fmt
    n_fmt = str(n)
    total_fmt = str(total) if total is not None else "?"
    post = ", " + postfix if postfix else ""
    remaining = (total - n) / rate if rate and total else 0
    remaining_str = format_interval(remaining) if rate else "?"
    l_bar = (prefix + ": ") if prefix else ""
    r_bar = f"| {n_fmt}/{total_fmt} [{elapsed_str}<{remaining_str}, {rate_fmt}{post}]"
    if total:
        frac = n / total
        l_bar += f"{frac * 100:3.0f}%|"
        return l_bar + render_bar(frac, 10, charset) + r_bar
    return f"{l_bar}{n_fmt}{unit} [{elapsed_str}, {rate_fmt}{post}]"


class _EMA:
    def __init__(self, smoothing: float) -> None:
        self.alpha = smoothing
        self.last = 0.0
        self.calls = 0

    def __call__(self, x: float | None = None) -> float:
        beta = 1 - self.alpha
        if x is not None:
            self.last = self.alpha * x + beta * self.last
            self.calls += 1
        return self.last / (1 - beta**self.calls) if self.calls else self.last


class Bar:
    """A tqdm bar writing to ``write`` (the simulated stderr), driven by an injectable clock.

    Args:
        write: writes text to stderr and flushes (tqdm flushes after every write).
        on_create: called first, like tqdm's ``status_printer`` flushing stdout and stderr.
    """

    def __init__(
        self,
        total: int | None,
        write: Callable[[str], None],
        clock: Callable[[], float],
        *,
        desc: str = "",
        smoothing: float = 0.3,
        leave: bool = True,
        position: int = 0,
        mininterval: float = 0.1,
        maxinterval: float = 10.0,
        on_create: Callable[[], None] | None = None,
        charset: str = UTF_CHARSET,
    ) -> None:
        self.total = total
        self._write = write
        self._clock = clock
        self.desc = desc
        self.smoothing = smoothing
        self.leave = leave
        self.pos = position
        self.mininterval = mininterval
        self.maxinterval = maxinterval
        self.miniters: float = 0
        self.charset = charset
        self.postfix: str | None = None
        self.n = 0
        self.last_print_n = 0
        self._ema_dn = _EMA(smoothing)
        self._ema_dt = _EMA(smoothing)
        self._ema_miniters = _EMA(smoothing)
        self._last_len = 0
        self.closed = False
        self._use_average = False
        if on_create is not None:
            on_create()
        self.start_t = self._clock()  # elapsed 0 for the first display
        self.display()
        self.last_print_t = self._clock()
        self.start_t = self.last_print_t

    # -- rendering -------------------------------------------------------------------------
    def _rate(self) -> float | None:
        if self._use_average:
            return None
        dt = self._ema_dt()
        return self._ema_dn() / dt if dt else None

    def __str__(self) -> str:
        elapsed = self._clock() - self.start_t
        return format_meter(
            self.n, self.total, elapsed, self.desc, self.postfix, self._rate(), charset=self.charset
        )

    def _print_status(self, s: str) -> None:
        len_s = len(s)
        self._write("\r" + s + " " * max(self._last_len - len_s, 0))
        self._last_len = len_s

    def display(self, msg: str | None = None, pos: int | None = None) -> None:
        pos = self.pos if pos is None else pos
        if pos:
            self._write("\n" * pos)
        self._print_status(str(self) if msg is None else msg)
        if pos:
            self._write(CURSOR_UP * pos)

    # -- tqdm API ----------------------------------------------------------------------------
    def refresh(self) -> None:
        if not self.closed:
            self.display()

    def set_postfix(self, refresh: bool = True, **kwargs: object) -> None:
        parts = []
        for key in sorted(kwargs):
            v = kwargs[key]
            sv = format_num(v) if isinstance(v, Number) else str(v)  # type: ignore[arg-type]
            parts.append(key + "=" + sv.strip())
        self.postfix = ", ".join(parts)
        if refresh:
            self.refresh()

    def set_postfix_ordered(self, items: list[tuple[str, object]], refresh: bool = True) -> None:
        """``set_postfix(ordered_dict)``: keys keep their order (no sorting)."""
        parts = []
        for key, v in items:
            sv = format_num(v) if isinstance(v, Number) else str(v)  # type: ignore[arg-type]
            parts.append(key + "=" + sv.strip())
        self.postfix = ", ".join(parts)
        if refresh:
            self.refresh()

    def update(self, n: int = 1) -> bool:
        if self.closed:
            return False
        self.n += n
        if abs(self.n - self.last_print_n) >= self.miniters:
            cur_t = self._clock()
            dt = cur_t - self.last_print_t
            if dt >= self.mininterval:
                dn = self.n - self.last_print_n
                if self.smoothing and dt and dn:
                    self._ema_dn(dn)
                    self._ema_dt(dt)
                self.refresh()
                if self.maxinterval and dt >= self.maxinterval:
                    self.miniters = dn * (self.mininterval or self.maxinterval) / dt
                elif self.smoothing:
                    self.miniters = self._ema_miniters(
                        dn * (self.mininterval / dt if self.mininterval and dt else 1)
                    )
                else:
                    self.miniters = max(self.miniters, dn)
                self.last_print_n = self.n
                self.last_print_t = cur_t
                return True
        return False

    def unpause(self) -> None:
        cur_t = self._clock()
        self.start_t += cur_t - self.last_print_t
        self.last_print_t = cur_t

    def close(self) -> None:
        """Final redraw and newline (leave=True) or clear the line (leave=False)."""
        if self.closed:
            return
        self.closed = True
        if self.leave:
            self._use_average = True
            self.display(pos=0)
            self._write("\n")
        else:
            self.display(msg="", pos=self.pos)
            if not self.pos:
                self._write("\r")
