"""A strict structural check of an HTML document, and a check that it refers to nothing outside.

Why our own: the standard library's ``html.parser`` tolerates anything, so this walks its
events and insists on what a browser would otherwise repair silently: one doctype, every
non-void element closed in order, no stray end tags, known void elements never closed, and
every ``src``/``href``/``srcset`` either a fragment or a ``data:`` URI.
"""

from __future__ import annotations

from html.parser import HTMLParser

VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
                  "source", "track", "wbr"})
#: Every element the report uses: a typo'd tag is an error, not an unknown element.
KNOWN = VOID | frozenset({
    "html", "head", "title", "style", "body", "main", "header", "footer", "section", "h1", "h2", "h3",
    "p", "span", "div", "dl", "dt", "dd", "table", "thead", "tbody", "tr", "th", "td", "ul", "li",
    "figure", "figcaption", "picture", "pre", "code", "strong", "i", "em", "a",
})
URL_ATTRS = ("src", "href", "srcset", "action", "poster", "data")


class StrictHtml(HTMLParser):
    """Collects problems instead of repairing them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.doctypes = 0
        self.urls: list[str] = []
        self.title = ""
        self._in_title = False
        self.counts: dict[str, int] = {}

    def handle_decl(self, decl: str) -> None:
        if decl.lower() == "doctype html":
            self.doctypes += 1
        else:
            self.problems.append(f"unexpected declaration {decl!r}")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.counts[tag] = self.counts.get(tag, 0) + 1
        if tag not in KNOWN:
            self.problems.append(f"unknown element <{tag}> at {self.getpos()}")
        names = [name for name, _ in attrs]
        if len(names) != len(set(names)):
            self.problems.append(f"duplicate attribute in <{tag}> at {self.getpos()}")
        for name, value in attrs:
            if name in URL_ATTRS:
                self.urls.append(value or "")
        if tag not in VOID:
            self.stack.append(tag)
        if tag == "title":
            self._in_title = True

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in VOID:
            self.problems.append(f"self-closed non-void <{tag}/> at {self.getpos()}")
        self.handle_starttag(tag, attrs)
        if tag not in VOID and self.stack and self.stack[-1] == tag:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            self.problems.append(f"end tag for void element </{tag}> at {self.getpos()}")
            return
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> does not close <{self.stack[-1] if self.stack else None}> at {self.getpos()}")
            if tag in self.stack:
                while self.stack and self.stack.pop() != tag:
                    pass
            return
        self.stack.pop()
        if tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


def check_html(text: str) -> StrictHtml:
    """Parse ``text``; raise AssertionError listing every structural problem."""
    parser = StrictHtml()
    parser.feed(text)
    parser.close()
    problems = list(parser.problems)
    if parser.doctypes != 1:
        problems.append(f"{parser.doctypes} doctype declarations (want 1)")
    if parser.stack:
        problems.append(f"unclosed elements: {parser.stack}")
    for tag in ("html", "head", "body", "title"):
        if parser.counts.get(tag) != 1:
            problems.append(f"{parser.counts.get(tag, 0)} <{tag}> elements (want 1)")
    assert not problems, "\n".join(problems[:20])
    return parser


def external_references(text: str, parser: StrictHtml) -> list[str]:
    """URLs (in attributes or anywhere in the text) that would reach outside the file."""
    bad = []
    for url in parser.urls:
        for candidate in (url.split()[0] if url.split() else "",):
            if not (candidate.startswith(("data:", "#")) or candidate == ""):
                bad.append(candidate[:80])
            if candidate.startswith("//"):
                bad.append(candidate[:80])
    lowered = text.lower()
    for needle in ("http:", "https:", "url(", "@import", "ftp:", "file://"):
        if needle in lowered:
            at = lowered.index(needle)
            bad.append(text[max(0, at - 30):at + 50])
    return bad
