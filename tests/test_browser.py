"""The built book as a reader sees it, in a headless Chromium (issue 13; conventions in CONTRIBUTING.md).

Every page of ``_build/html`` is opened at 1280 px and 800 px wide. The test fails when, inside a page's article:

- a code block (``<pre>``: cell input, stream output, prose code) is cut off: its box leaves the column, or its
  text is wider than its box (code must wrap or be shortened to the column; a horizontal scrollbar hiding code
  counts as cut off);
- a table, cell output or image reaches past the column, unless it sits in a box that scrolls by design
  (``overflow-x: auto|scroll``) and that box itself stays inside the column; content clipped by an
  ``overflow: hidden`` box counts as cut off;
- a figure or table referenced in the prose (``{numref}``/``{ref}`` to ``fig-...``/``tab-...``) is missing on its
  page, or has no loaded image or table under its id;
- any link or image points to a file missing from the site, or to a ``#anchor`` missing from its page;
- an element the browser does not know (``HTMLUnknownElement``) stands in the article: text such as
  ``results/sets/<set>/...`` written outside a code span, which Markdown passes on as a tag and the reader
  never sees;
- a page shows the absolute path of the checkout that built it (a cell's return value such as
  ``PosixPath('/srv/.../results/tables/...')``): it says nothing to a reader and differs on every machine.

Collapsed cells (``hide-input``) are opened before measuring: a reader can open them. Requests that leave the site
are blocked, so the run is offline and quick (one browser, one page per width, about 30 page loads).

Marked ``browser``: the plain ``pytest`` run (before the book is built) deselects it; ``make test`` runs it after the
strict book build (``make browser-test``). Without Chromium, Playwright or a build it skips and says why;
``MSLIB_REQUIRE_BROWSER=1`` (set by ``.ci/run``) turns each of those skips into a failure. Chromium:
``$MSLIB_CHROMIUM``, else ``chromium``/``chromium-browser``/``google-chrome`` on PATH.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # the test extra is not installed: the fixture says so
    sync_playwright = None

from tests.conftest import ROOT

pytestmark = pytest.mark.browser

BUILD = ROOT / "_build" / "html"
WIDTHS = (1280, 800)
HEIGHT = 900
SLACK_PX = 1  # sub-pixel rounding
REDIRECT = re.compile(r'<meta[^>]+http-equiv="refresh"', re.IGNORECASE)  # Jupyter Book's bare index.html

# Measures one page: returns {"article": bool, "offenders": [...]}; see the module docstring for the rules.
OVERFLOW_JS = r"""
() => {
  const article = document.querySelector("article.bd-article") || document.querySelector("article");
  if (!article) return {article: false, offenders: []};
  const cs = getComputedStyle(article), box = article.getBoundingClientRect();
  const colLeft = box.left + parseFloat(cs.paddingLeft), colRight = box.right - parseFloat(cs.paddingRight);
  const ox = el => getComputedStyle(el).overflowX;
  const describe = el => {
    const cls = [...el.classList].slice(0, 3).map(c => "." + c).join("");
    const where = el.parentElement.closest("[id]:not(article)");
    const text = (el.innerText || el.getAttribute("src") || el.getAttribute("alt") || "").trim().replace(/\s+/g, " ");
    return `<${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""}${cls}>` +
      (where ? ` in #${where.id}` : "") + ` "${text.slice(0, 60)}"`;
  };
  const beyond = (l, r) => Math.max(r - colRight, colLeft - l);
  const measure = el => {
    const r = el.getBoundingClientRect();
    if (el.tagName === "PRE") return Math.max(beyond(r.left, r.right), el.scrollWidth - el.clientWidth);
    const extent = r.left + Math.max(r.width, el.scrollWidth || 0);
    for (let a = el; a && a !== article; a = a.parentElement) {
      if (["auto", "scroll"].includes(ox(a))) {
        const s = a.getBoundingClientRect();
        return beyond(s.left, s.right);
      }
      if (["hidden", "clip"].includes(ox(a)) && a !== el) {
        const c = a.getBoundingClientRect();
        return Math.max(beyond(c.left, c.right), extent - c.right);
      }
    }
    return beyond(r.left, extent);
  };
  const offenders = [], reported = [];
  const sel = "pre, table, .cell_output > *, img, svg, figure";
  for (const el of article.querySelectorAll(sel)) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    if (reported.some(p => p.contains(el))) continue;
    const px = measure(el);
    if (px > %SLACK%) { offenders.push({element: describe(el), px: Math.round(px)}); reported.push(el); }
  }
  return {article: true, offenders};
}
""".replace("%SLACK%", str(SLACK_PX))

# Collects what links need: every id on the page, every link/image target, the fig-/tab- references in the
# article, and for each fig-/tab- id whether it holds a loaded image or a table.
LINKS_JS = r"""
() => {
  const ids = [...document.querySelectorAll("[id]")].map(e => e.id)
    .concat([...document.querySelectorAll("a[name]")].map(e => e.name));
  const links = [...document.querySelectorAll("a[href]")].map(a => a.href)
    .concat([...document.querySelectorAll("img[src]")].map(i => i.src));
  const brokenImages = [...document.querySelectorAll("img[src]")]
    .filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src);
  const article = document.querySelector("article") || document.body;
  const articleLinks = [...article.querySelectorAll("a[href]")].map(a => a.href);
  const unknown = [...article.querySelectorAll("*")].filter(e => e instanceof HTMLUnknownElement)
    .map(e => e.tagName.toLowerCase());
  const refs = [...article.querySelectorAll("a[href*='#fig-'], a[href*='#tab-']")]
    .map(a => ({href: a.href, text: a.innerText.trim()}));
  const loaded = el => el.tagName !== "IMG" || (el.complete && el.naturalWidth > 0);
  const content = {};
  for (const el of document.querySelectorAll("[id^='fig-'], [id^='tab-']")) {
    const inner = el.matches("img, svg, table") ? [el] : [...el.querySelectorAll("img, svg, table")];
    content[el.id] = inner.length > 0 && inner.every(loaded);
  }
  return {ids, links, articleLinks, brokenImages, refs, content, unknown};
}
"""


@dataclass
class PageScan:
    """What one page showed: overflow offenders per width, and its link facts (measured at the first width)."""

    path: Path
    redirect: bool = False
    has_article: bool = False
    offenders: dict[int, list[dict]] = field(default_factory=dict)
    ids: set[str] = field(default_factory=set)
    links: list[str] = field(default_factory=list)
    article_links: list[str] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    refs: list[dict] = field(default_factory=list)
    content: dict[str, bool] = field(default_factory=dict)
    unknown_tags: list[str] = field(default_factory=list)


def _skip_or_fail(reason: str) -> None:
    """Skip with the reason on a user's machine; fail under MSLIB_REQUIRE_BROWSER=1 (``make test``, CI)."""
    if os.environ.get("MSLIB_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (MSLIB_REQUIRE_BROWSER=1: the browser test must run)")
    pytest.skip(reason)


def chromium_path() -> str | None:
    """The system Chromium: $MSLIB_CHROMIUM, else the first of chromium/chromium-browser/google-chrome on PATH."""
    if os.environ.get("MSLIB_CHROMIUM"):
        return os.environ["MSLIB_CHROMIUM"]
    names = ("chromium", "chromium-browser", "google-chrome")
    return next((p for p in map(shutil.which, names) if p), None)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if sync_playwright is None:
        _skip_or_fail("Playwright is not installed: pip install -e '.[test]'")
    executable = chromium_path()
    if executable is None:
        _skip_or_fail("no Chromium found (install the system package `chromium`, or set MSLIB_CHROMIUM)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=executable, headless=True)
        yield chromium
        chromium.close()


def site_pages(root: Path) -> list[Path]:
    """Every HTML page of a built site, theme and source folders left out."""
    skip = {"_static", "_sources", "_images", "_downloads"}
    return sorted(p for p in root.rglob("*.html") if not skip & set(p.relative_to(root).parts))


def _open(page: Page, path: Path) -> None:
    page.goto(path.as_uri(), wait_until="load")
    page.evaluate("() => document.querySelectorAll('details').forEach(d => { d.open = true; })")


def scan_site(browser: Browser, root: Path, widths: tuple[int, ...] = WIDTHS) -> dict[Path, PageScan]:
    """Open every page of ``root`` at each width (one context and one page per width) and measure it."""
    scans = {path: PageScan(path, redirect=bool(REDIRECT.search(path.read_text()))) for path in site_pages(root)}
    shown = {path: scan for path, scan in scans.items() if not scan.redirect}  # a redirect is not opened
    for n, width in enumerate(widths):
        context = browser.new_context(viewport={"width": width, "height": HEIGHT})
        context.route(re.compile(r"^(?!file:)"), lambda route: route.abort())  # offline: nothing leaves the site
        page = context.new_page()
        for path, scan in shown.items():
            _open(page, path)
            measured = page.evaluate(OVERFLOW_JS)
            scan.has_article, scan.offenders[width] = measured["article"], measured["offenders"]
            if n == 0:
                facts = page.evaluate(LINKS_JS)
                scan.ids, scan.links, scan.refs = set(facts["ids"]), facts["links"], facts["refs"]
                scan.broken_images, scan.content = facts["brokenImages"], facts["content"]
                scan.article_links, scan.unknown_tags = facts["articleLinks"], facts["unknown"]
        context.close()
    return scans


def overflow_problems(scans: dict[Path, PageScan], root: Path) -> list[str]:
    """One line per element cut off: page, width, element, overflow in px."""
    return [
        f"{path.relative_to(root)} @ {width}px: {o['element']} overflows by {o['px']} px"
        for path, scan in scans.items()
        for width, offenders in scan.offenders.items()
        for o in offenders
    ]


def _target(url: str, root: Path) -> tuple[Path, str] | None:
    """(file, fragment) of a link inside the site; None for a link that leaves it (http, mailto, ...)."""
    parts = urlsplit(url)
    if parts.scheme != "file":
        return None
    path = Path(unquote(parts.path))
    return (path / "index.html" if path.is_dir() else path), unquote(parts.fragment)


def link_problems(scans: dict[Path, PageScan], root: Path) -> list[str]:
    """One line per link or image whose file, or whose #anchor on that page, is missing from the site."""
    problems = []
    for path, scan in scans.items():
        page = path.relative_to(root)
        problems += [f"{page}: image does not load: {src}" for src in scan.broken_images]
        for url in scan.links:
            target = _target(url, root)
            if target is None:
                continue
            file, anchor = target
            if not file.resolve().is_relative_to(root.resolve()):
                problems.append(f"{page}: link leaves the built site: {url}")
            elif not file.is_file():
                problems.append(f"{page}: link to a missing file: {file.relative_to(root)}")
            elif anchor and file in scans and anchor not in scans[file].ids:
                problems.append(f"{page}: link to a missing anchor: {file.relative_to(root)}#{anchor}")
    return sorted(set(problems))


def reference_problems(scans: dict[Path, PageScan], root: Path) -> list[str]:
    """One line per fig-/tab- reference whose target is not on its page with a loaded image or a table."""
    problems = []
    for path, scan in scans.items():
        for ref in scan.refs:
            if (target := _target(ref["href"], root)) is None:
                continue  # a link out of the site (another book's figure) is not ours to check
            file, anchor = target
            held = scans[file].content if file in scans else {}
            if held.get(anchor) is not True:
                why = "missing" if anchor not in held else "has no loaded image or table"
                problems.append(f"{path.relative_to(root)}: '{ref['text']}' -> #{anchor} {why}")
    return sorted(set(problems))


def swallowed_markup_problems(scans: dict[Path, PageScan], root: Path) -> list[str]:
    """One line per page whose article holds elements the browser does not know (text taken for a tag)."""
    return [f"{path.relative_to(root)}: unknown element(s) {sorted(set(scan.unknown_tags))}, text taken for a tag"
            for path, scan in scans.items() if scan.unknown_tags]


def machine_path_problems(scans: dict[Path, PageScan], root: Path, checkout: Path) -> list[str]:
    """One line per page whose HTML holds the absolute path of ``checkout``, the repository that built it."""
    return [f"{path.relative_to(root)}: shows the path {checkout}" for path in scans
            if str(checkout) in path.read_text()]


@pytest.fixture(scope="module")
def book(browser: Browser) -> dict[Path, PageScan]:
    if not (BUILD / "index.html").is_file():
        _skip_or_fail(f"the book is not built ({BUILD.relative_to(ROOT)}/index.html missing): run `make book-only`")
    return scan_site(browser, BUILD)


def _report(problems: list[str], what: str) -> str:
    return f"{len(problems)} {what}:\n" + "\n".join(problems)


def test_book_pages_all_have_an_article(book: dict[Path, PageScan]) -> None:
    chapters = [p for p in book if p.parent.name in ("executed", "book")]
    assert len(chapters) >= 9, f"expected the chapters under executed/ and book/, found {sorted(book)}"
    pages = [BUILD / "index.html"] + chapters
    redirects = [str(p.relative_to(BUILD)) for p in pages if book[p].redirect]
    assert not redirects, f"pages that only redirect (the landing page must be a page): {redirects}"
    missing = [str(p.relative_to(BUILD)) for p in pages if not book[p].has_article]
    assert not missing, f"pages without an <article> (nothing measured): {missing}"


def test_nothing_is_cut_off_at_desktop_and_narrow_widths(book: dict[Path, PageScan]) -> None:
    problems = overflow_problems(book, BUILD)
    assert not problems, _report(problems, "elements cut off")


def test_referenced_figures_and_tables_are_on_their_pages(book: dict[Path, PageScan]) -> None:
    problems = reference_problems(book, BUILD)
    assert not problems, _report(problems, "referenced figures/tables missing")


def test_internal_links_resolve(book: dict[Path, PageScan]) -> None:
    problems = link_problems(book, BUILD)
    assert not problems, _report(problems, "broken internal links")


def test_no_text_is_taken_for_an_html_tag(book: dict[Path, PageScan]) -> None:
    problems = swallowed_markup_problems(book, BUILD)
    assert not problems, _report(problems, "pages with text swallowed as markup")


def test_no_page_shows_the_path_of_the_checkout_that_built_it(book: dict[Path, PageScan]) -> None:
    problems = machine_path_problems(book, BUILD, ROOT)
    assert not problems, _report(problems, "pages with a machine path")


def test_landing_page_links_to_every_chapter_and_the_repository(book: dict[Path, PageScan]) -> None:
    """The root index.html is a page (not a redirect) whose article links to every chapter of _toc.yml, and whose
    header links to the repository of _config.yml when its button is on (and no placeholder address is shown)."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    links = book[BUILD / "index.html"].links
    assert not [u for u in links if "PLACEHOLDER" in u.upper()], "a placeholder address reaches the reader"
    if config["html"]["use_repository_button"]:
        repository = config["repository"]["url"]
        assert repository in links, f"index.html has no link to {repository}"
    chapters = re.findall(r"file:\s*(\S+)", (ROOT / "_toc.yml").read_text())
    linked = {str(t[0].relative_to(BUILD).with_suffix("")) for u in book[BUILD / "index.html"].article_links
              if (t := _target(u, BUILD)) and t[0].is_relative_to(BUILD)}
    missing = [c for c in chapters if c not in linked]
    assert not missing, f"index.html does not link to {missing}"


# The checks themselves, on a small site whose faults are known: each rule can fail, and spares what it should.
PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6360f8cfc0f01f0005fe02fe0dd2a6a90000000049454e44ae426082"
)
LONG = "x = " + " + ".join(["value"] * 200)
WIDE_TABLE = "<tr>" + "<td>column_value</td>" * 80 + "</tr>"
FAULTY_PAGE = f"""<html><head><style>
  article.bd-article {{ width: 600px; padding: 0 20px; margin: 0 auto; }}
  pre {{ white-space: pre; overflow-x: auto; }}
</style></head><body><article class="bd-article">
  <pre id="code-scrolls">{LONG}</pre>
  <pre id="code-wraps" style="white-space: pre-wrap; overflow-wrap: anywhere">{LONG}</pre>
  <pre id="code-short">x = 1</pre>
  <div id="box-scrolls" style="overflow-x: auto"><table id="table-scrolls">{WIDE_TABLE}</table></div>
  <div id="box-clips" style="overflow: hidden"><table id="table-clipped">{WIDE_TABLE}</table></div>
  <table id="table-spills">{WIDE_TABLE}</table>
  <svg id="svg-wide" width="2000" height="10"></svg>
  <p><a href="other.html#fig-ok">Fig 1</a> <a href="other.html#fig-broken">Fig 2</a>
     <a href="#tab-gone">Table 1</a> <a href="other.html#here">here</a> <a href="other.html#nowhere">x</a>
     <a href="gone.html">gone</a> <a href="https://example.org/#fig-outside">outside</a></p>
  <p>records: results/sets/<set>/run.json, <code>results/&lt;run_id&gt;.json</code></p>
  <mjx-container>x</mjx-container>
  <pre>PosixPath('/srv/builder/mslib-book/results/tables/tab-x.csv')</pre>
</article></body></html>"""
OTHER_PAGE = """<html><body><article><p id="here">text</p>
  <figure id="fig-ok"><img src="ok.png"></figure><figure id="fig-broken"><img src="lost.png"></figure>
</article></body></html>"""


@pytest.fixture(scope="module")
def faulty_site(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[Path, PageScan]]:
    root = tmp_path_factory.mktemp("site")
    (root / "index.html").write_text(FAULTY_PAGE)
    (root / "other.html").write_text(OTHER_PAGE)
    (root / "ok.png").write_bytes(PNG_1PX)
    return root, scan_site(browser, root)


def test_overflow_check_flags_cut_off_elements_and_spares_scroll_boxes(faulty_site) -> None:
    root, scans = faulty_site
    for width in WIDTHS:
        flagged = {re.search(r"#([\w-]+)", o["element"]).group(1) for o in scans[root / "index.html"].offenders[width]}
        assert flagged == {"code-scrolls", "table-clipped", "table-spills", "svg-wide"}, width
    assert all(o["px"] > 100 for o in scans[root / "index.html"].offenders[800])
    assert overflow_problems(scans, root)[0].startswith("index.html @ 1280px: <")


def test_link_and_reference_checks_flag_exactly_the_broken_ones(faulty_site) -> None:
    root, scans = faulty_site
    assert link_problems(scans, root) == [
        "index.html: link to a missing anchor: index.html#tab-gone",
        "index.html: link to a missing anchor: other.html#nowhere",
        "index.html: link to a missing file: gone.html",
        "other.html: image does not load: " + (root / "lost.png").as_uri(),
        "other.html: link to a missing file: lost.png",
    ]
    assert reference_problems(scans, root) == [
        "index.html: 'Fig 2' -> #fig-broken has no loaded image or table",
        "index.html: 'Table 1' -> #tab-gone missing",
    ]


def test_swallowed_markup_check_flags_unknown_tags_and_spares_custom_elements(faulty_site) -> None:
    root, scans = faulty_site
    assert swallowed_markup_problems(scans, root) == [
        "index.html: unknown element(s) ['set'], text taken for a tag"]


def test_machine_path_check_flags_only_the_page_with_the_path(faulty_site) -> None:
    root, scans = faulty_site
    checkout = Path("/srv/builder/mslib-book")
    assert machine_path_problems(scans, root, checkout) == [f"index.html: shows the path {checkout}"]
    assert machine_path_problems(scans, root, Path("/srv/builder/other")) == []
