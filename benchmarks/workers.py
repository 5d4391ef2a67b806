"""Several workers and runs on one tenant's rate budget, through PostgreSQL state.

The emulator (a subprocess, real HTTP) limits the tenant to ``--limit`` requests/s
(bucket: one second's worth). Every run's per-second request timeline is read back from
its run record in PostgreSQL and summed by wall-clock second; the use of the budget is
the requests answered other than 429 per second of the steady window (from the third
second with requests, when the bucket's initial burst is spent and the share learnt, to
the one before the last), over the limit.

1. ``import --workers N`` for N = 1, 2, 4: together >= 95 % of the budget, < 1 % 429s.
2. Two imports at once on one tenant (a backfill and a smaller import beside it, each a
   worker on the shared state): while both send, the sum stays within the limit and each
   keeps its half.
3. ``--max-share 0.5`` (2 workers): use within 45-55 % of the limit.

    source .ci/postgres.sh                 # exports KRAITER_TEST_POSTGRES_URL
    python benchmarks/workers.py           # the issue's sizes (about 9 minutes)
    python benchmarks/workers.py --quick   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.import_throughput import start_server, stop, write_input  # noqa: E402

KEY = "kr_workers_benchmark_key"


def _env(state_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KRAITER")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["KRAITER_API_KEY"] = KEY
    env["KRAITER_SYNC_STATE"] = state_url
    return env


def _import(url: str, src: Path, state: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "kraiter_sync",
        "import",
        str(src),
        "--base-url",
        url,
        "--state-dir",
        str(state),
        "--quiet",
        "--json",
        *extra,
    ]


def _timelines(base: str, schema: str) -> list[dict[str, Any]]:
    with psycopg.connect(base, autocommit=True) as conn:
        rows = conn.execute(
            f'SELECT details FROM "{schema}".runs WHERE command = %s', ["import"]
        ).fetchall()
    return [json.loads(r[0])["timeline"] for r in rows if r[0]]


def _per_second(timeline: dict[str, Any]) -> dict[int, tuple[int, int]]:
    """Wall second → (answered other than 429, answered 429)."""
    width = float(timeline["bucket_seconds"])
    series = timeline["series"]
    requests = series.get("requests", [])
    limited = series.get("429", [])
    out: dict[int, tuple[int, int]] = defaultdict(lambda: (0, 0))
    for i, sent in enumerate(requests):
        second = int(timeline["started_at"] + i * width)
        hit = limited[i] if i < len(limited) else 0
        served, was = out[second]
        out[second] = (served + sent - hit, was + hit)
    return out


def _use(per: dict[int, tuple[int, int]], limit: float) -> tuple[float, int, int]:
    """Use of the budget in the steady window: from the third second with requests (the
    bucket's initial burst spent, the share learnt) to the one before the last."""
    seconds = sorted(s for s, (served, hit) in per.items() if served or hit)
    window = [s for s in seconds if seconds[0] + 2 <= s < seconds[-1]]
    served = sum(per[s][0] for s in window)
    hit = sum(per[s][1] for s in window)
    return served / (limit * max(len(window), 1)), served, hit


def _merge(timelines: list[dict[str, Any]]) -> dict[int, tuple[int, int]]:
    total: dict[int, tuple[int, int]] = defaultdict(lambda: (0, 0))
    for timeline in timelines:
        for second, (served, hit) in _per_second(timeline).items():
            a, b = total[second]
            total[second] = (a + served, b + hit)
    return total


class Scenario:
    """A fresh emulator database and a fresh state schema."""

    def __init__(self, tmp: Path, base: str, limit: float, name: str) -> None:
        self.tmp = tmp / name
        self.tmp.mkdir()
        self.base = base
        self.schema = f"bench_{name}_{secrets.token_hex(3)}"
        self.state_url = f"{base}?schema={self.schema}"
        self.proc, self.url = start_server(self.tmp / "kraiter.db", "--rate-limit", str(limit))

    def run(self, *commands: list[str]) -> list[dict[str, Any]]:
        procs = [
            subprocess.Popen(
                c,
                env=_env(self.state_url),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for c in commands
        ]
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=1800)
            if proc.returncode not in (0, 3):
                raise SystemExit(f"import failed ({proc.returncode}): {err[-2000:]}")
            results.append(json.loads(out))
        return results

    def close(self) -> None:
        stop(self.proc)
        with psycopg.connect(self.base, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')


def workers(tmp: Path, base: str, *, limit: float, events: int, n: int) -> float:
    src = tmp / f"events-{n}.parquet"
    write_input(src, events, contacts=max(events // 20, 1))
    scenario = Scenario(tmp, base, limit, f"w{n}")
    try:
        flags = ["--workers", str(n)] if n else []  # 0: a plain run, for comparison
        [result] = scenario.run(_import(scenario.url, src, scenario.tmp / "st", *flags))
        use, served, hit = _use(_merge(_timelines(base, scenario.schema)), limit)
    finally:
        scenario.close()
    sent = result["events"]["sent"] + result["events"]["verified"]
    print(
        f"{n} worker(s): {sent:,} events, {served:,} requests served in the steady window → "
        f"{use:.1%} of {limit:.0f}/s (target ≥ 95%); 429s: {hit} "
        f"({hit / max(served + hit, 1):.2%}, target < 1%)"
    )
    return use


def two_runs(tmp: Path, base: str, *, limit: float, events: int) -> None:
    backfill, beside = tmp / "backfill.parquet", tmp / "beside.parquet"
    write_input(backfill, events, contacts=max(events // 20, 1))
    write_input(beside, events // 2, contacts=max(events // 40, 1))
    scenario = Scenario(tmp, base, limit, "two")
    try:
        scenario.run(
            _import(scenario.url, backfill, scenario.tmp / "a", "--workers", "1"),
            _import(scenario.url, beside, scenario.tmp / "b", "--workers", "1"),
        )
        runs = [_per_second(t) for t in _timelines(base, scenario.schema)]
    finally:
        scenario.close()
    both = sorted(set.intersection(*[{s for s, v in r.items() if v[0]} for r in runs]))
    both = both[1:-1]  # whole seconds only
    if not both:
        print("import beside import: the runs did not overlap")
        return
    parts = [sum(r[s][0] for s in both) / len(both) for r in runs]
    hit = sum(r[s][1] for r in runs for s in both)
    print(
        f"import beside import, {len(both)} s together: {parts[0]:.1f}/s + {parts[1]:.1f}/s = "
        f"{sum(parts):.1f}/s of {limit:.0f}/s ({sum(parts) / limit:.1%}, target ≤ 100%); "
        f"shares {parts[0] / limit:.1%} / {parts[1] / limit:.1%} (each ~50%); 429s: {hit}"
    )


def max_share(tmp: Path, base: str, *, limit: float, events: int) -> float:
    src = tmp / "share.parquet"
    write_input(src, events, contacts=max(events // 20, 1))
    scenario = Scenario(tmp, base, limit, "share")
    try:
        scenario.run(
            _import(scenario.url, src, scenario.tmp / "st", "--workers", "2", "--max-share", "0.5")
        )
        per = _merge(_timelines(base, scenario.schema))
        use, served, hit = _use(per, limit)
    finally:
        scenario.close()
    print(
        f"--max-share 0.5, 2 workers: {served:,} requests → {use:.1%} of {limit:.0f}/s "
        f"(target 45-55%); 429s: {hit}"
    )
    return use


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=float, default=200.0)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--only", type=int, default=None, help="one run with N workers (0: a plain run)"
    )
    args = parser.parse_args()
    base = os.environ.get("KRAITER_TEST_POSTGRES_URL")
    if not base:
        raise SystemExit("KRAITER_TEST_POSTGRES_URL is not set: source .ci/postgres.sh first")
    events = 1500 if args.quick else args.events
    with tempfile.TemporaryDirectory() as tmp:
        if args.only is not None:
            workers(Path(tmp), base, limit=args.limit, events=events, n=args.only)
            return
        for n in (1, 2, 4):
            workers(Path(tmp), base, limit=args.limit, events=events, n=n)
        two_runs(Path(tmp), base, limit=args.limit, events=events)
        max_share(Path(tmp), base, limit=args.limit, events=events // 2)


if __name__ == "__main__":
    main()
