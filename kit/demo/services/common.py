"""What the naive and batched services share: argument checks, JSON-ready rows, the single-query
endpoints the seed already got right, and the reconciliation matcher (talks to PostgreSQL).

Every function takes a SQLAlchemy Connection first and returns plain dicts (timestamps as ISO
strings, numerics as floats) so results compare equal across implementations and can be cached.
Writes commit on the given connection ("commit as you go").
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, column, table, text, update

MAX_PER_PAGE = 1000
PROJECT_FIELDS = ("name", "description", "status", "is_active")
_PROJECTS = table("projects", *(column(c) for c in ("id", *PROJECT_FIELDS, "updated_at")))


def check_page(page: int, per_page: int) -> tuple[int, int]:
    """``(limit, offset)`` for a 1-based page; ValueError/TypeError on nonsense."""
    for name, value in (("page", page), ("per_page", per_page)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if page < 1:
        raise ValueError(f"page must be >= 1, got {page}")
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise ValueError(f"per_page must be between 1 and {MAX_PER_PAGE}, got {per_page}")
    return per_page, (page - 1) * per_page


def like_pattern(query: str) -> str:
    """A case-insensitive substring pattern for ILIKE with ``%``, ``_`` and ``\\`` escaped."""
    if not isinstance(query, str):
        raise TypeError(f"query must be a str, got {type(query).__name__}")
    escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def jsonable(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def row_dict(row: Any) -> dict[str, Any]:
    return {k: jsonable(v) for k, v in row._mapping.items()}


def page_result(items: list[dict[str, Any]], page: int, per_page: int) -> dict[str, Any]:
    return {"items": items, "page": page, "per_page": per_page}


LIST_PROJECTS = text("""
SELECT p.id, p.name, p.description, p.status, p.is_active, p.owner_id,
       u.email AS owner_email, u.first_name || ' ' || u.last_name AS owner_name,
       p.created_at, p.updated_at
FROM projects p JOIN users u ON u.id = p.owner_id
ORDER BY p.created_at DESC, p.id DESC
LIMIT :limit OFFSET :offset
""")


def list_projects(conn: Connection, *, page: int = 1, per_page: int = 20) -> dict[str, Any]:
    """A page of projects with their owners (one statement; the seed's §1.3 is about caching)."""
    limit, offset = check_page(page, per_page)
    rows = conn.execute(LIST_PROJECTS, {"limit": limit, "offset": offset})
    return page_result([row_dict(r) for r in rows], page, per_page)


GET_PROJECT = text("""
SELECT p.id, p.name, p.description, p.status, p.is_active, p.owner_id,
       u.email AS owner_email, u.first_name || ' ' || u.last_name AS owner_name,
       p.created_at, p.updated_at
FROM projects p JOIN users u ON u.id = p.owner_id
WHERE p.id = :project_id
""")


def get_project(conn: Connection, project_id: int) -> dict[str, Any] | None:
    """One project with its owner, or None when there is no such project."""
    row = conn.execute(GET_PROJECT, {"project_id": int(project_id)}).first()
    return row_dict(row) if row is not None else None


GET_JOBS = text("""
SELECT id, project_id, name, status, created_by, total_records, matched_count, unmatched_count,
       started_at, completed_at, created_at, updated_at
FROM reconciliation_jobs
WHERE project_id = :project_id
ORDER BY created_at DESC, id DESC
LIMIT :limit OFFSET :offset
""")


def get_reconciliation_jobs(conn: Connection, *, project_id: int, page: int = 1, per_page: int = 20) -> dict[str, Any]:
    """A page of one project's reconciliation jobs, newest first."""
    limit, offset = check_page(page, per_page)
    rows = conn.execute(GET_JOBS, {"project_id": int(project_id), "limit": limit, "offset": offset})
    return page_result([row_dict(r) for r in rows], page, per_page)


def update_project(conn: Connection, project_id: int, **fields: Any) -> dict[str, Any] | None:
    """Change some of ``name, description, status, is_active``; commit; the project after."""
    unknown = sorted(set(fields) - set(PROJECT_FIELDS))
    if unknown or not fields:
        raise ValueError(f"update_project takes some of {', '.join(PROJECT_FIELDS)}; got {unknown or 'nothing'}")
    stmt = (
        update(_PROJECTS)
        .where(_PROJECTS.c.id == int(project_id))
        .values(**fields, updated_at=text("now()"))
        .returning(_PROJECTS.c.id)
    )
    changed = conn.execute(stmt).first()
    conn.commit()
    return get_project(conn, project_id) if changed is not None else None


# -- reconciliation: the matching itself is the same code for both implementations ------------

JOB = text("SELECT id, project_id FROM reconciliation_jobs WHERE id = :job_id AND project_id = :project_id")
RECORDS = text("""
SELECT id, data_source_id, external_id, amount, currency, transaction_date
FROM reconciliation_records
WHERE project_id = :project_id
ORDER BY data_source_id, id
""")
CLEAR_RESULTS = text("DELETE FROM reconciliation_results WHERE job_id = :job_id")
CLEAR_MATCHES = text("DELETE FROM reconciliation_matches WHERE job_id = :job_id")
INSERT_RESULT = text("""
INSERT INTO reconciliation_results (job_id, left_record_id, right_record_id, confidence, status)
VALUES (:job_id, :left_record_id, :right_record_id, :confidence, :status)
""")
INSERT_MATCH = text("""
INSERT INTO reconciliation_matches (project_id, job_id, left_record_id, right_record_id, confidence, match_type)
VALUES (:project_id, :job_id, :left_record_id, :right_record_id, :confidence, :match_type)
""")
FINISH_JOB = text("""
UPDATE reconciliation_jobs
SET status = 'completed', total_records = :total, matched_count = :matched,
    unmatched_count = :unmatched, started_at = coalesce(started_at, now()),
    completed_at = now(), updated_at = now()
WHERE id = :job_id
""")


def load_job(conn: Connection, project_id: int, job_id: int) -> list[Any]:
    """The records a job reconciles; ValueError when the job is not in the project."""
    if conn.execute(JOB, {"job_id": int(job_id), "project_id": int(project_id)}).first() is None:
        raise ValueError(
            f"no reconciliation job {job_id} in project {project_id}; list them with get_reconciliation_jobs"
        )
    return list(conn.execute(RECORDS, {"project_id": int(project_id)}))


def match_records(records: list[Any], *, project_id: int, job_id: int) -> tuple[list[dict], list[dict]]:
    """Pair the first data source's records with the others': same external id and amount is an
    exact match, same amount/currency/date a rule match, anything else unmatched.
    Returns (result rows, match rows), deterministic for the same records."""
    if not records:
        return [], []
    left_source = records[0].data_source_id
    left = [r for r in records if r.data_source_id == left_source]
    by_ext: dict[tuple, list[Any]] = {}
    by_rule: dict[tuple, list[Any]] = {}
    for r in records:
        if r.data_source_id != left_source:
            by_ext.setdefault((r.external_id, r.amount, r.currency), []).append(r)
            by_rule.setdefault((r.amount, r.currency, r.transaction_date), []).append(r)
    used: set[int] = set()
    results: list[dict] = []
    matches: list[dict] = []
    for rec in left:
        found, kind, confidence = None, None, Decimal("0")
        for key, table_, k, c in (
            ((rec.external_id, rec.amount, rec.currency), by_ext, "exact", "1.0"),
            ((rec.amount, rec.currency, rec.transaction_date), by_rule, "rule", "0.9"),
        ):
            found = next((r for r in table_.get(key, ()) if r.id not in used), None)
            if found is not None:
                kind, confidence = k, Decimal(c)
                break
        base = {"job_id": job_id, "left_record_id": rec.id, "confidence": confidence}
        if found is None:
            results.append({**base, "right_record_id": None, "status": "unmatched"})
            continue
        used.add(found.id)
        results.append({**base, "right_record_id": found.id, "status": "matched"})
        matches.append({**base, "project_id": project_id, "right_record_id": found.id, "match_type": kind})
    return results, matches


def job_summary(project_id: int, job_id: int, results: list[dict], matches: list[dict]) -> dict[str, Any]:
    return {
        "project_id": int(project_id),
        "job_id": int(job_id),
        "total_records": len(results),
        "matched": len(matches),
        "unmatched": len(results) - len(matches),
        "results_written": len(results),
        "matches_written": len(matches),
    }


def finish_job(conn: Connection, job_id: int, results: list[dict], matches: list[dict]) -> None:
    conn.execute(
        FINISH_JOB,
        {"job_id": job_id, "total": len(results), "matched": len(matches), "unmatched": len(results) - len(matches)},
    )
