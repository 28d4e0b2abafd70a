"""Streaming CSV ingest of reconciliation records through COPY, and a deterministic CSV generator
(talks to PostgreSQL).

The seed reads uploads in 8 KB chunks, five files at a time, and suggests streaming above
100 MB (§6.1). Here every file is streamed: read ``chunk_size`` bytes, hand them to
``COPY ... FROM STDIN``, repeat — memory is bounded by ``concurrency x chunk_size`` whatever the
file size. Each file is one transaction: a malformed row aborts that file's COPY, nothing of the
file stays, and the error names the file and the line PostgreSQL stopped at.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import psycopg
from psycopg import sql
from sqlalchemy import Engine

from kit.demo.metrics import KitMetrics

TABLE = "reconciliation_records"
COLUMNS = (
    "project_id",
    "data_source_id",
    "source_system",
    "external_id",
    "amount",
    "currency",
    "transaction_date",
    "status",
)
CHUNK_SIZES = (8 * 1024, 64 * 1024, 1024 * 1024)  # the seed's 8 KB, its 64 KB buffer, 1 MB
_SYSTEMS = ("sap", "oracle", "netsuite", "quickbooks", "xero", "stripe", "adyen", "plaid", "workday", "sage")
_CURRENCIES = ("USD", "EUR", "GBP", "JPY", "CHF")
_STATUSES = ("matched", "unmatched", "pending", "exception")
_LINE = re.compile(r"\bline (\d+)\b")


# -- generator ----------------------------------------------------------------------------------


def generate_csv(
    path: str | Path,
    *,
    rows: int | None = None,
    target_bytes: int | None = None,
    projects: int = 300,
    data_sources: int = 900,
    seed: int = 42,
    malformed_lines: Sequence[int] = (),
) -> Path:
    """Write a CSV of reconciliation records (header + ``rows`` rows, or rows until ``target_bytes``).

    Same arguments, same bytes. ``projects``/``data_sources`` bound the foreign keys (ids
    1..n must exist). ``malformed_lines`` are file line numbers (the header is line 1) whose
    amount is written as ``not-a-number``.
    """
    if (rows is None) == (target_bytes is None):
        raise ValueError("give exactly one of rows / target_bytes")
    rng, bad = random.Random(seed), set(malformed_lines)
    start, written, line = date(2024, 1, 1), 0, 1
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8", buffering=1 << 20) as f:
        written += f.write(",".join(COLUMNS) + "\n")
        while (rows is not None and line <= rows) or (target_bytes is not None and written < target_bytes):
            line += 1
            amount = "not-a-number" if line in bad else f"{rng.uniform(-5000, 50000):.2f}"
            written += f.write(
                f"{rng.randint(1, projects)},{rng.randint(1, data_sources)},{rng.choice(_SYSTEMS)},"
                f"EXT-{seed}-{line:09d},{amount},{rng.choice(_CURRENCIES)},"
                f"{start + timedelta(days=rng.randrange(366))},{rng.choice(_STATUSES)}\n"
            )
    return path


def sample_files(
    directory: str | Path,
    *,
    files: int = 5,
    rows: int = 2000,
    projects: int = 300,
    data_sources: int = 900,
    seed: int = 42,
) -> list[Path]:
    """``files`` CSVs of ``rows`` rows each in ``directory`` (made once; same arguments, same files),
    for comparing chunk sizes and concurrency. ``projects``/``data_sources``: ids that exist."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    return [
        generate_csv(
            folder / f"records-{seed}-{rows}-{i}.csv",
            rows=rows,
            projects=projects,
            data_sources=data_sources,
            seed=seed + i,
        )
        for i in range(files)
    ]


# -- ingest -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileLoad:
    """One file: rows copied (0 when it failed; rolled back when loaded with ``keep=False``),
    bytes read, and the error if any."""

    path: str
    rows: int
    bytes: int
    seconds: float
    error: str | None = None
    line: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class IngestResult:
    """Several files loaded concurrently."""

    files: tuple[FileLoad, ...]
    chunk_size: int
    concurrency: int
    seconds: float

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    @property
    def mb_per_s(self) -> float:
        return sum(f.bytes for f in self.files if f.ok) / 2**20 / self.seconds if self.seconds > 0 else 0.0

    @property
    def errors(self) -> list[str]:
        return [f.error for f in self.files if f.error]

    def to_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame([vars(f) for f in self.files])
        frame["chunk_size"], frame["concurrency"] = self.chunk_size, self.concurrency
        return frame


def _copy_statement(table: str) -> sql.Composed:
    return sql.SQL("COPY {table} ({cols}) FROM STDIN WITH (FORMAT csv, HEADER true)").format(
        table=sql.Identifier(table), cols=sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
    )


def _describe(path: Path, exc: psycopg.Error) -> tuple[str, int | None]:
    context = (exc.diag.context or "") if exc.diag else ""
    match = _LINE.search(context)
    line = int(match.group(1)) if match else None  # COPY counts the header: its line = the file's line
    primary = (exc.diag.message_primary if exc.diag else None) or str(exc).splitlines()[0]
    where = f"{path.name} line {line}" if line else path.name
    return f"{where}: {primary}; fix the row and load the file again (nothing of it was kept)", line


def ingest_file(
    engine: Engine, path: str | Path, *, chunk_size: int = 64 * 1024, table: str = TABLE, keep: bool = True
) -> FileLoad:
    """Stream one CSV into ``table`` in one transaction; ``keep=False`` rolls it back (benchmarks)."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    path, started, read = Path(path), time.perf_counter(), 0
    with engine.connect() as conn, path.open("rb") as f:
        # psycopg directly: SQLAlchemy has no COPY; its Connection has not begun a transaction,
        # so commit and rollback go to the driver connection too
        raw = conn.connection.driver_connection
        assert raw is not None  # a connection just checked out is attached to its psycopg connection
        try:
            with raw.cursor() as cur:
                with cur.copy(_copy_statement(table)) as copy:
                    while chunk := f.read(chunk_size):
                        read += len(chunk)
                        copy.write(chunk)
                rows = cur.rowcount
            raw.commit() if keep else raw.rollback()
        except psycopg.Error as exc:
            raw.rollback()
            message, line = _describe(path, exc)
            return FileLoad(str(path), 0, read, time.perf_counter() - started, message, line)
    return FileLoad(str(path), rows, read, time.perf_counter() - started)


def ingest_files(
    engine: Engine,
    paths: Sequence[str | Path],
    *,
    chunk_size: int = 64 * 1024,
    concurrency: int = 5,
    table: str = TABLE,
    keep: bool = True,
    metrics: KitMetrics | None = None,
) -> IngestResult:
    """Load ``paths`` with at most ``concurrency`` files in flight, one connection each.

    The engine's pool should hold ``concurrency`` connections; ``metrics.file_uploads_active``
    follows the files in flight.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    lock = threading.Lock()

    def one(p: str | Path) -> FileLoad:
        if metrics is not None:
            with lock:
                metrics.file_uploads_active.inc()
        try:
            return ingest_file(engine, p, chunk_size=chunk_size, table=table, keep=keep)
        finally:
            if metrics is not None:
                metrics.file_uploads_active.dec()

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="kit-ingest") as pool:
        files = tuple(pool.map(one, paths))
    return IngestResult(files, chunk_size, concurrency, time.perf_counter() - started)


def compare_ingest(
    engine: Engine,
    paths: Sequence[str | Path],
    *,
    chunk_sizes: Sequence[int] = CHUNK_SIZES,
    concurrencies: Sequence[int] = (1, 5),
    trials: int = 3,
) -> pd.DataFrame:
    """Rows/s and MB/s for every chunk size x concurrency, median of ``trials`` (after one warm-up).

    Every load is rolled back (``keep=False``): the comparison leaves the table as it found it.
    """
    ingest_files(engine, paths[:1], chunk_size=max(chunk_sizes), concurrency=1, keep=False)  # warm-up
    rows = []
    for concurrency in concurrencies:
        for chunk in chunk_sizes:
            runs = [
                ingest_files(engine, paths, chunk_size=chunk, concurrency=concurrency, keep=False)
                for _ in range(trials)
            ]
            errors = sorted({e for r in runs for e in r.errors})
            if errors:
                raise ValueError(f"cannot compare on malformed files: {errors[0]}")
            rows.append(
                {
                    "chunk_size": chunk,
                    "chunk": _human(chunk),
                    "concurrency": concurrency,
                    "rows": runs[0].rows,
                    "seconds": float(pd.Series([r.seconds for r in runs]).median()),
                    "rows_per_s": float(pd.Series([r.rows_per_s for r in runs]).median()),
                    "mb_per_s": float(pd.Series([r.mb_per_s for r in runs]).median()),
                }
            )
    return pd.DataFrame(rows)


def _human(n: int) -> str:
    return f"{n // 2**20} MB" if n >= 2**20 else f"{n // 1024} KB"
