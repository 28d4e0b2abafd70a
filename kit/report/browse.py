"""Is a report readable as a reader opens it? Open ``report.html`` offline in chromium at a laptop's
width and check what the page promises: every chart drawn, the verdict and the top findings on the
first screen, no code on the page, no sideways scrolling, statements named by a readable label (never
a bare queryid, in a label or in a sentence). The same check the tests make, for a user's own CI.

    with browser.launch() as chromium:
        assert check(Path("runs/…/report.html"), chromium).problems() == []
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kit.charts import browser
from kit.charts.browser import ChartCheck

VIEWPORT = (1280, 800)
# What would mean a notebook's code reached the page.
CODE_MARKS = ("assert ", "kit.record(", "import kit", "results.save(", "Traceback")
BARE_ID = re.compile(r"^-?\d{6,}$")

_PAGE_JS = r"""
(marks) => {
  const vh = window.innerHeight;
  const inFirst = el => el && el.getBoundingClientRect().top >= 0 && el.getBoundingClientRect().bottom <= vh;
  const rows = [...document.querySelectorAll('#top + table tr')].slice(1);
  const text = document.body.innerText;
  const labels = [...document.querySelectorAll('.label, .ytick text, .xtick text')].map(e => e.textContent.trim());
  return {
    verdict: inFirst(document.querySelector('#verdict')),
    top_heading: inFirst(document.querySelector('#top')),
    top_rows: rows.length,
    top_rows_first_screen: rows.filter(inFirst).length,
    page_width: document.documentElement.scrollWidth,
    viewport_width: window.innerWidth,
    code_elements: document.querySelectorAll('pre, code, textarea, .jp-InputArea, .input_area').length,
    code_marks: marks.filter(m => text.includes(m)),
    queryids: [...new Set(text.match(/(?<![\w.])-?\d{15,20}(?![\w.])/g) || [])],
    labels: labels.filter(l => l.length > 0),
  };
}
"""


@dataclass(frozen=True)
class PageCheck:
    charts: ChartCheck
    verdict: bool  # the verdict wholly inside the first screen
    top_heading: bool
    top_rows: int
    top_rows_first_screen: int
    page_width: int
    viewport_width: int
    code_elements: int
    code_marks: tuple[str, ...]
    labels: tuple[str, ...]
    queryids: tuple[str, ...] = ()  # 15-20 digit numbers in the text: a statement named by its queryid

    def problems(self) -> list[str]:
        """One line per broken promise (empty: the report reads as it should)."""
        out = [*self.charts.problems()]
        if not self.charts.charts:
            out.append("the report has no chart")
        if not self.verdict:
            out.append("the verdict is not on the first screen")
        if self.top_rows and (not self.top_heading or self.top_rows_first_screen == 0):
            out.append("the top findings are not on the first screen")
        if self.page_width > self.viewport_width:
            out.append(f"the page scrolls sideways: {self.page_width} px wide in a {self.viewport_width} px window")
        if self.code_elements:
            out.append(f"{self.code_elements} element(s) hold code")
        out += [f"the page shows code: {mark!r}" for mark in self.code_marks]
        out += [f"a bare queryid as a label: {label}" for label in self.labels if BARE_ID.match(label)]
        out += [f"a queryid in the text: {q}" for q in self.queryids]
        return out


def check(html: Path, chromium: Any, *, screenshot: Path | None = None) -> PageCheck:
    """Open ``html`` offline at 1280×800 and check it; ``screenshot``: keep the first screen there."""
    page, blocked = browser.offline_page(chromium, viewport=VIEWPORT)
    try:
        page.goto(Path(html).resolve().as_uri(), wait_until="load")
        charts = browser.check_charts(page, name=Path(html).name, blocked=blocked)
        found = page.evaluate(_PAGE_JS, list(CODE_MARKS))
        if screenshot is not None:
            Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot))
    finally:
        page.context.close()
    return PageCheck(
        charts=charts,
        **{k: v for k, v in found.items() if k not in ("code_marks", "labels", "queryids")},
        code_marks=tuple(found["code_marks"]),
        labels=tuple(found["labels"]),
        queryids=tuple(found["queryids"]),
    )
