"""render/: half-block text from known pixels, protocol detection and escapes, sheets/grids."""

from __future__ import annotations

import base64
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from rich.console import Console

from sdxl_tui.render import halfblock, protocols, sheet, show

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def _png(path: Path, pixels: list[list[tuple[int, int, int]]]) -> Path:
    img = Image.new("RGB", (len(pixels[0]), len(pixels)))
    for y, row in enumerate(pixels):
        for x, px in enumerate(row):
            img.putpixel((x, y), px)
    img.save(path)
    return path


def _cells(text) -> list[list[tuple[tuple[int, int, int], tuple[int, int, int] | None]]]:
    rows: list[list] = [[]]
    for segment in text.render(Console(color_system="truecolor")):
        if segment.text == "\n":
            rows.append([])
            continue
        for ch in segment.text:
            assert ch == halfblock.UPPER_HALF
            fg = segment.style.color.get_truecolor() if segment.style.color else None
            bg = segment.style.bgcolor.get_truecolor() if segment.style.bgcolor else None
            rows[-1].append((tuple(fg), tuple(bg) if bg else None))
    return rows


def test_2x2_png_gives_one_row_of_two_cells_with_top_and_bottom_colours(tmp_path: Path) -> None:
    path = _png(tmp_path / "a.png", [[RED, GREEN], [BLUE, WHITE]])
    text = halfblock.render_halfblock(path, 2, 1)
    assert text.plain == halfblock.UPPER_HALF * 2
    assert _cells(text) == [[(RED, BLUE), (GREEN, WHITE)]]
    # a bigger box scales up with flat blocks (2x): each pixel becomes 2 columns x 1 cell
    assert _cells(halfblock.render_halfblock(path, 4, 10)) == [
        [(RED, RED), (RED, RED), (GREEN, GREEN), (GREEN, GREEN)],
        [(BLUE, BLUE), (BLUE, BLUE), (WHITE, WHITE), (WHITE, WHITE)],
    ]


def test_4x4_png_gives_two_rows(tmp_path: Path) -> None:
    rows = [[RED] * 4, [GREEN] * 4, [BLUE] * 2 + [WHITE] * 2, [WHITE] * 2 + [RED] * 2]
    text = halfblock.render_halfblock(_png(tmp_path / "b.png", rows), 4, 2)
    assert text.plain == (halfblock.UPPER_HALF * 4 + "\n") + halfblock.UPPER_HALF * 4
    assert _cells(text) == [
        [(RED, GREEN)] * 4,
        [(BLUE, WHITE), (BLUE, WHITE), (WHITE, RED), (WHITE, RED)],
    ]


def test_fits_the_box_keeping_aspect_and_odd_heights(tmp_path: Path) -> None:
    big = Image.new("RGB", (1024, 512), RED)
    assert halfblock.fit_size(big.size, 40, 40) == (40, 10)  # 40x20 pixels
    assert halfblock.fit_size((1024, 1024), 80, 20) == (40, 20)
    text = halfblock.render_halfblock(big, 40, 40)
    assert len(text.plain.split("\n")) == 10 and all(len(r) == 40 for r in text.plain.split("\n"))
    odd = _png(tmp_path / "odd.png", [[RED], [GREEN], [BLUE]])
    assert _cells(halfblock.render_halfblock(odd, 1, 2)) == [[(RED, GREEN)], [(BLUE, None)]]


def test_256_colour_terminal_gets_downsampled_colours(tmp_path: Path) -> None:
    text = halfblock.render_halfblock(_png(tmp_path / "c.png", [[RED], [BLUE]]), 4, 4)
    console = Console(color_system="256", force_terminal=True, width=20)
    with console.capture() as cap:
        console.print(text)
    out = cap.get()
    assert "\x1b[" in out and "38;2;" not in out  # no true-colour escapes
    assert re.search(r"38;5;\d+", out) and re.search(r"48;5;\d+", out)


def test_alpha_is_flattened_on_the_background(tmp_path: Path) -> None:
    img = Image.new("RGBA", (1, 2), (255, 0, 0, 0))
    img.putpixel((0, 1), (0, 0, 255, 255))
    assert _cells(halfblock.render_halfblock(img, 1, 1, background=(10, 20, 30))) == [[((10, 20, 30), BLUE)]]


# --------------------------------------------------------------------------- protocols


@pytest.mark.parametrize(
    ("env", "protocol", "tmux"),
    [
        ({"TERM": "xterm-kitty", "KITTY_WINDOW_ID": "1"}, "kitty", False),
        ({"TERM": "tmux-256color", "TMUX": "/tmp/tmux-0/default,1,0", "KITTY_WINDOW_ID": "3"}, "kitty", True),
        ({"TERM_PROGRAM": "iTerm.app", "TERM": "xterm-256color"}, "iterm2", False),
        ({"TERM_PROGRAM": "tmux", "TMUX": "x", "LC_TERMINAL": "iTerm2"}, "iterm2", True),
        ({"TERM_PROGRAM": "WezTerm"}, "iterm2", False),
        ({"TERM": "foot"}, "sixel", False),
        ({"TERM": "xterm-256color"}, "none", False),
        ({"TERM": "screen-256color", "TMUX": "x"}, "none", True),
        ({"TERM": "xterm-kitty", "SDXL_TUI_IMAGES": "none"}, "none", False),
    ],
)
def test_detection_from_environment(env: dict[str, str], protocol: str, tmux: bool) -> None:
    support = protocols.detect_image_support(env)
    assert (support.protocol, support.tmux) == (protocol, tmux)
    assert support.inline == (protocol in ("kitty", "iterm2"))


def test_tmux_passthrough_doubles_escapes() -> None:
    seq = "\x1b_Ga=T;AAAA\x1b\\"
    wrapped = protocols.tmux_wrap(seq)
    assert wrapped == "\x1bPtmux;\x1b\x1b_Ga=T;AAAA\x1b\x1b\\\x1b\\"
    assert wrapped.startswith("\x1bPtmux;") and wrapped.endswith("\x1b\\")


def test_kitty_chunks_base64_at_4096() -> None:
    payload = bytes(range(256)) * 40  # 10240 bytes -> 13656 base64 characters
    out = protocols.kitty_escape(payload, cols=20, rows=10)
    chunks = re.findall(r"\x1b_G([^;]*);([^\x1b]*)\x1b\\", out)
    assert [len(data) for _, data in chunks] == [4096, 4096, 4096, 13656 - 3 * 4096]
    assert chunks[0][0] == "a=T,f=100,q=2,c=20,r=10,m=1"
    assert [c for c, _ in chunks[1:]] == ["m=1", "m=1", "m=0"]
    assert base64.b64decode("".join(d for _, d in chunks)) == payload
    wrapped = protocols.kitty_escape(payload, tmux=True)
    assert wrapped.count("\x1bPtmux;") == 4  # every chunk wrapped on its own


def test_iterm2_inline_escape() -> None:
    out = protocols.iterm2_escape(b"PNGDATA", name="00_42.png", cols=30)
    assert out.startswith("\x1b]1337;File=") and out.endswith("\x07")
    assert f"name={base64.b64encode(b'00_42.png').decode()}" in out
    assert "size=7" in out and "inline=1" in out and "width=30" in out
    assert out.split(":", 1)[1][:-1] == base64.b64encode(b"PNGDATA").decode()
    assert protocols.iterm2_escape(b"x", tmux=True).startswith("\x1bPtmux;\x1b\x1b]1337;")


def test_encode_image_file(tmp_path: Path) -> None:
    path = _png(tmp_path / "d.png", [[RED, GREEN], [BLUE, WHITE]])
    kitty = protocols.encode_image(path, protocols.ImageSupport("kitty"), cols=2, rows=1)
    data = "".join(re.findall(r"\x1b_G[^;]*;([^\x1b]*)\x1b\\", kitty))
    assert base64.b64decode(data).startswith(b"\x89PNG")
    assert protocols.encode_image(path, protocols.ImageSupport("none")) is None
    assert protocols.encode_image(path, protocols.ImageSupport("sixel")) is None


# --------------------------------------------------------------------------- sheets


def test_contact_sheet_and_grid(tmp_path: Path) -> None:
    a = _png(tmp_path / "a.png", [[RED] * 8] * 8)
    b = _png(tmp_path / "b.png", [[BLUE] * 8] * 8)
    s = sheet.contact_sheet([a, b, a], cell=16)
    assert s.size == (2 * 16, 2 * 16)
    assert s.getpixel((8, 8)) == RED and s.getpixel((24, 8)) == BLUE and s.getpixel((8, 24)) == RED
    grid = sheet.comparison_grid([("epoch 6", [a, b]), ("epoch 8", [b, None])], ["p1", "p2"], cell=32)
    assert grid.size == (150 + 64, 40 + 64)
    assert grid.getpixel((150 + 16, 40 + 16)) == RED
    assert grid.getpixel((150 + 48, 40 + 16)) == BLUE
    assert grid.getpixel((150 + 16, 40 + 48)) == BLUE
    assert grid.getpixel((150 + 48, 40 + 48)) == sheet.MISSING


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_print_image_uses_the_protocol_on_a_terminal_and_half_blocks_elsewhere(tmp_path: Path) -> None:
    path = _png(tmp_path / "e.png", [[RED, GREEN], [BLUE, WHITE]])
    tty = _Tty()
    assert show.print_image(path, file=tty, max_cols=10, max_rows=5, env={"KITTY_WINDOW_ID": "1"}) == "kitty"
    assert tty.getvalue().startswith("\x1b_Ga=T,f=100")
    tmux = _Tty()
    assert show.print_image(path, file=tmux, max_cols=10, max_rows=5,
                            env={"TMUX": "x", "LC_TERMINAL": "iTerm2"}) == "iterm2"
    assert tmux.getvalue().startswith("\x1bPtmux;\x1b\x1b]1337;File=")
    pipe = io.StringIO()
    assert show.print_image(path, file=pipe, max_cols=2, max_rows=1, env={"KITTY_WINDOW_ID": "1"}) == "halfblock"
    assert pipe.getvalue() == halfblock.UPPER_HALF * 2 + "\n" and "\x1b" not in pipe.getvalue()
    forced = _Tty()
    assert show.print_image(path, file=forced, max_cols=2, max_rows=1, halfblock=True,
                            env={"KITTY_WINDOW_ID": "1"}) == "halfblock"
    # coloured (Rich picks the colour depth the environment announces) and no image escape
    assert "\x1b[" in forced.getvalue() and "\x1b_G" not in forced.getvalue()
    assert forced.getvalue().count(halfblock.UPPER_HALF) == 2


def test_render_imports_no_textual() -> None:
    code = ("import sys, sdxl_tui.render.halfblock, sdxl_tui.render.protocols, sdxl_tui.render.sheet,"
            " sdxl_tui.render.show\n"
            "print([m for m in ('textual', 'torch', 'PIL') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
