"""Load results from raw per-request samples: percentiles with bootstrap intervals, errors by kind,
pool waits and process resources (pure: samples in, results out).

Both engines hand their samples here — :mod:`kit.demo.load.engine` (Locust, one row per request from
every worker process) and :mod:`kit.demo.load.threads` (threads in this process) — so a figure means the
same whichever engine measured it. A sample row: ``endpoint``, ``start_s`` (the request's *intended*
start in the open model, its actual start in the closed one, seconds from the measured phase's
start: negative in the warm-up), ``latency_ms`` (from that start, pool wait included), ``wait_ms``
(the pool checkout), ``error`` (None or a kind) and ``measured``. Latency comes from measured
requests that succeeded; errors count every request, warm-up included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kit.demo.metrics import ResourceSummary

if TYPE_CHECKING:  # numpy and pandas load where a result is summed up, not in the load's own processes
    import numpy as np
    import pandas as pd

QUANTILES = {"p50": 50.0, "p95": 95.0, "p99": 99.0}
MODELS = ("open", "closed")
SAMPLE_COLUMNS = ["endpoint", "start_s", "latency_ms", "wait_ms", "error", "measured"]


def latency_summary(
    latency_ms: np.ndarray, *, n_boot: int = 300, confidence: float = 0.95, seed: int = 0
) -> dict[str, tuple[float, float, float]]:
    """``{"p50": (value, lo, hi), ...}``: percentiles with percentile-bootstrap intervals."""
    import numpy as np

    lat = np.asarray(latency_ms, dtype=float)
    if lat.size == 0:
        return {k: (float("nan"),) * 3 for k in QUANTILES}
    qs = list(QUANTILES.values())
    point = np.percentile(lat, qs)
    rng = np.random.default_rng(seed)
    boots = np.empty((n_boot, len(qs)))
    for i in range(n_boot):  # one resample at a time: (n_boot x n) at once would not fit for big runs
        boots[i] = np.percentile(lat[rng.integers(0, lat.size, lat.size)], qs)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(boots, [alpha, 1.0 - alpha], axis=0)
    return {k: (float(point[j]), float(lo[j]), float(hi[j])) for j, k in enumerate(QUANTILES)}


@dataclass(frozen=True)
class LoadResult:
    """One load run. ``requests`` started in the measured phase (the throughput's and latency's
    basis); ``started`` every request, each counted once with its outcome; ``errors`` and
    ``error_kinds`` every failed one, warm-up and ``unfinished`` included.

    ``model`` is ``open`` (``rate_rps`` offered, latency from the intended start) or ``closed``
    (``users`` each waiting ``think_s`` between requests; ``rate_rps`` is None).
    """

    label: str
    users: int
    requests: int
    errors: int
    error_kinds: dict[str, int]
    duration_s: float
    throughput_rps: float
    latency_ms: dict[str, tuple[float, float, float]]  # p50/p95/p99 -> (value, ci_lo, ci_hi)
    pool: dict[str, dict[str, float]]  # phase -> pool statistics
    hung: bool
    resources: ResourceSummary | None = field(default=None, repr=False)
    samples: pd.DataFrame = field(default=None, repr=False, compare=False)
    started: int = 0
    warmup_requests: int = 0  # started before the measured phase: in errors, not in latency
    unfinished: int = 0  # still running when the run ended: errors of kind "unfinished"
    model: str = "closed"
    rate_rps: float | None = None  # offered (open model)
    think_s: float = 0.0
    engine: str = "threads"
    workers: int = 1  # processes that ran users

    @property
    def p95_ms(self) -> float:
        return self.latency_ms["p95"][0]

    def wait_quantile_ms(self, q: float = 0.95) -> float:
        """A quantile of the pool wait (checkout time) of the measured requests that got a connection."""
        m = self.samples[self.samples["measured"]]["wait_ms"].dropna()
        return float(m.quantile(q)) if len(m) else float("nan")

    @property
    def max_wait_ms(self) -> float:
        """The longest pool wait of any request, warm-up included (a starved request is one too many)."""
        w = self.samples["wait_ms"].dropna()
        return float(w.max()) if len(w) else float("nan")

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        row = {
            "label": self.label,
            "engine": self.engine,
            "model": self.model,
            "users": self.users,
            "workers": self.workers,
            "rate_rps": self.rate_rps,
            "think_s": self.think_s,
            "requests": self.requests,
            "errors": self.errors,
            "started": self.started,
            "warmup_requests": self.warmup_requests,
            "unfinished": self.unfinished,
            "throughput_rps": self.throughput_rps,
        }
        for k, (v, lo, hi) in self.latency_ms.items():
            row.update({f"{k}_ms": v, f"{k}_lo": lo, f"{k}_hi": hi})
        row.update({"p99_wait_ms": self.wait_quantile_ms(0.99), "max_wait_ms": self.max_wait_ms})
        measure = self.pool.get("measure", {})
        row.update({f"pool_{k}": measure.get(k) for k in ("checkouts", "waits", "wait_s", "timeouts", "peak_in_use")})
        if self.resources is not None:
            row.update({"rss_peak_mb": self.resources.rss_peak_mb, "cpu_mean_pct": self.resources.cpu_mean_pct})
        row["hung"] = self.hung
        return pd.DataFrame([row])

    def by_endpoint(self) -> pd.DataFrame:
        """Per endpoint: measured requests and their latency; every request started and every error."""
        f = self.samples
        measured = (
            f[f["measured"]]
            .groupby("endpoint")
            .agg(
                requests=("latency_ms", "size"),
                p50_ms=("latency_ms", "median"),
                p95_ms=("latency_ms", lambda s: s.quantile(0.95)),
                p95_wait_ms=("wait_ms", lambda s: s.quantile(0.95)),
            )
        )
        everything = f.groupby("endpoint").agg(
            started=("error", "size"), errors=("error", lambda s: int(s.notna().sum()))
        )
        out = everything.join(measured, how="left").fillna({"requests": 0}).astype({"requests": int})
        return out.reset_index()[["endpoint", "requests", "errors", "started", "p50_ms", "p95_ms", "p95_wait_ms"]]


def summarize(
    frame: pd.DataFrame,
    *,
    label: str,
    users: int,
    duration_s: float,
    pool: dict,
    hung: bool,
    resources: ResourceSummary | None,
    n_boot: int = 300,
    seed: int = 42,
    **run,
) -> LoadResult:
    """A :class:`LoadResult` from a frame of samples (see the module docstring); ``duration_s`` is the
    measured window, the throughput's basis; ``run`` holds the descriptive fields (model, rate_rps, ...)."""
    m = frame[frame["measured"]]
    ok = m[m["error"].isna()]
    kinds = {str(k): int(v) for k, v in frame["error"].value_counts().items()}
    return LoadResult(
        label=label,
        users=users,
        requests=len(m),
        errors=int(frame["error"].notna().sum()),
        error_kinds=kinds,
        duration_s=duration_s,
        throughput_rps=len(ok) / max(duration_s, 1e-9),
        latency_ms=latency_summary(ok["latency_ms"].to_numpy(), n_boot=n_boot, seed=seed),
        pool=pool,
        hung=hung,
        resources=resources,
        samples=frame[SAMPLE_COLUMNS].reset_index(drop=True),
        started=len(frame),
        warmup_requests=int((frame["start_s"] < 0).sum()),
        unfinished=int((frame["error"] == "unfinished").sum()),
        **run,
    )


def resource_summary(samples: pd.DataFrame) -> ResourceSummary | None:
    """RSS and CPU of the load's processes together (``samples``: ``pid``, ``t_s``, ``rss_mb``,
    ``cpu_pct`` rows from each process, on each process's clock), summed on a 0.5 s grid."""
    if samples is None or samples.empty:
        return None
    grid = samples.assign(t_s=(samples["t_s"] / 0.5).round() * 0.5)
    total = (
        grid.groupby(["t_s", "pid"]).mean(numeric_only=True).groupby("t_s")[["rss_mb", "cpu_pct"]].sum().reset_index()
    )
    cpu = total["cpu_pct"].iloc[1:] if len(total) > 1 else total["cpu_pct"]
    return ResourceSummary(
        rss_start_mb=float(total["rss_mb"].iloc[0]),
        rss_peak_mb=float(total["rss_mb"].max()),
        rss_end_mb=float(total["rss_mb"].iloc[-1]),
        cpu_mean_pct=float(cpu.mean()),
        cpu_max_pct=float(cpu.max()),
        samples=total,
    )
