"""The one-page report of a run: ``runs/<ts>/report.html``, self-contained and readable offline —
the verdict and the top findings first, then a section per concern (:mod:`kit.report.page`), from
the files the run left (:mod:`kit.report.facts`); ``--pdf`` prints it through the kit's chromium,
and :func:`check` opens it there as a reader would (:mod:`kit.report.browse`).

    path = report.write(Path("runs/20261206T101500Z"))
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from kit.report.browse import PageCheck, check
from kit.report.facts import RunFacts, read_run
from kit.report.page import render

__all__ = ["REPORT_FILE", "PageCheck", "RunFacts", "check", "read_run", "render", "write", "write_pdf"]

REPORT_FILE = "report.html"


def write(folder: str | Path) -> Path:
    """Write ``report.html`` into the run folder ``folder`` (replacing an earlier one) and return its path."""
    folder = Path(folder)
    html = render(read_run(folder))
    target = folder / REPORT_FILE
    partial = target.with_name(f".{REPORT_FILE}.partial")
    partial.write_text(html, encoding="utf-8")
    partial.replace(target)  # a reader never sees half a report
    return target


def write_pdf(html: Path, *, browser=None) -> Path:
    """``html`` printed to a PDF beside it (A4, backgrounds kept) through the kit's chromium."""
    from kit.charts import browser as browsers

    target = Path(html).with_suffix(".pdf")
    with browsers.launch() if browser is None else contextlib.nullcontext(browser) as launched:
        page, _ = browsers.offline_page(launched)
        try:
            page.goto(Path(html).resolve().as_uri(), wait_until="load")
            browsers.check_charts(page, name=Path(html).name, settle_s=15.0)
            page.emulate_media(media="screen")
            page.pdf(path=str(target), format="A4", print_background=True, scale=0.7)
        finally:
            page.context.close()
    return target
