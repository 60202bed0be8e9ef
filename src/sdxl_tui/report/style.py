"""The report's stylesheet, inlined into every HTML file.

Why inline and system fonts only: the file must render the same from an ``scp``-ed copy on a
laptop with no network, so nothing may be fetched (no web fonts, no ``url()``). Colours are
CSS variables with a dark set under ``prefers-color-scheme: dark``; the charts come in both
variants and the browser picks one.
"""

from __future__ import annotations

__all__ = ["CSS"]

CSS = """
:root {
  color-scheme: light dark;
  --bg: #f6f7f9; --fg: #1f2328; --muted: #59636e; --card: #ffffff; --border: #d6dbe1;
  --accent: #0b63ce; --ok: #1a7f37; --warn: #9a6700; --err: #cf222e; --code: #eef1f4;
  --loading: #8c959f; --caching: #8250df; --training: #2da44e; --saving: #bf8700;
  --sampling: #218bff; --paused: #e16f24; --stopped: #6e7781;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0f1216; --fg: #e6edf3; --muted: #9aa5b1; --card: #171b21; --border: #2d333b;
    --accent: #58a6ff; --ok: #3fb950; --warn: #d29922; --err: #f85149; --code: #1f252d;
    --loading: #6e7681; --caching: #a371f7; --training: #3fb950; --saving: #d29922;
    --sampling: #58a6ff; --paused: #f0883e; --stopped: #484f58;
  }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1080px; margin: 0 auto; padding: 24px 20px 48px; }
h1 { font-size: 1.7rem; margin: 0 0 4px; }
h2 { font-size: 1.2rem; margin: 0 0 12px; }
section { background: var(--card); border: 1px solid var(--border); border-radius: 10px;
  padding: 16px 18px; margin: 16px 0; }
.sub, .muted, figcaption { color: var(--muted); font-size: 0.9rem; }
.badge { display: inline-block; padding: 2px 10px; border-radius: 999px; font-weight: 600;
  font-size: 0.95rem; color: #fff; background: var(--accent); vertical-align: middle; }
.badge.finished { background: var(--ok); }
.badge.failed { background: var(--err); }
.badge.interrupted, .badge.stalled { background: var(--warn); }
.reason { font-size: 1.05rem; margin: 6px 0 0; }
dl.glance { display: grid; grid-template-columns: max-content 1fr; gap: 4px 18px; margin: 0; }
dl.glance dt { color: var(--muted); }
dl.glance dd { margin: 0; font-variant-numeric: tabular-nums; }
table { border-collapse: collapse; width: 100%; font-size: 0.9rem; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--border); vertical-align: top; }
th { color: var(--muted); font-weight: 600; }
table.narrow { width: auto; min-width: 40%; }
tr.best td { font-weight: 600; }
tr.best td:first-child::after { content: "  lowest loss"; color: var(--ok); font-size: 0.8rem; }
.scroll { overflow-x: auto; }
.bar { position: relative; height: 26px; border-radius: 6px; background: var(--code); overflow: hidden;
  margin: 4px 0 8px; }
.bar span { position: absolute; top: 0; bottom: 0; min-width: 2px; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 16px; margin: 0 0 12px; padding: 0; list-style: none;
  font-size: 0.9rem; }
.legend i { display: inline-block; width: 12px; height: 12px; border-radius: 3px; margin-right: 6px;
  vertical-align: -1px; }
.k-loading { background: var(--loading); } .k-caching { background: var(--caching); }
.k-training { background: var(--training); } .k-saving { background: var(--saving); }
.k-sampling { background: var(--sampling); } .k-paused { background: var(--paused); }
.k-stopped { background: repeating-linear-gradient(45deg, var(--stopped) 0 4px, transparent 4px 8px); }
figure { margin: 0 0 12px; }
figure img { max-width: 100%; height: auto; border-radius: 6px; border: 1px solid var(--border); }
.thumbs { display: flex; flex-wrap: wrap; gap: 10px; }
.thumbs figure { margin: 0; }
ul.alerts { list-style: none; padding: 0; margin: 0; }
ul.alerts li { border-left: 4px solid var(--accent); padding: 6px 10px; margin: 0 0 8px; background: var(--code);
  border-radius: 0 6px 6px 0; }
ul.alerts li.error { border-color: var(--err); }
ul.alerts li.warning { border-color: var(--warn); }
.fix { margin-top: 4px; }
pre { background: var(--code); padding: 10px 12px; border-radius: 6px; overflow-x: auto;
  white-space: pre-wrap; word-break: break-all; font-size: 0.85rem; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; }
footer { color: var(--muted); font-size: 0.85rem; text-align: center; margin-top: 24px; }
@media print { section { break-inside: avoid; } }
"""
