"""``import --dry-run`` of a multi-part Parquet export from a local S3 against local disk.

    python benchmarks/objectstore_import.py                  # 5M events in 10 parts
    python benchmarks/objectstore_import.py --rows 1000000 --parts 4

The same hive-partitioned export (``date=.../part-N.parquet``, like BigQuery's or
Databricks') is written to a temporary directory and uploaded to moto's S3 server
(``ThreadedMotoServer``, real HTTP on 127.0.0.1, run by this process). Then the CLI runs
``kraiter-sync import --dry-run`` on ``s3://bench/events/`` and on the local directory,
each in a fresh process, and the script prints wall time, rows/s and peak RSS (VmHWM) of
each, and the S3/disk ratios, all from one run.

Reading from S3 streams: Parquet footers and column chunks arrive by range GETs, so
peak memory should match the local read's; the time ratio includes moto itself, a
Python server sharing this machine's cores (a real S3 costs the client no CPU).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from datagen import write_events_parquet
from local_s3 import local_s3

CHILD = r"""
import json, sys, time
t = time.perf_counter()
from kraiter_sync.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")][0].split()[1]
print("BENCH " + json.dumps({"code": code, "s": time.perf_counter() - t, "hwm_kb": int(hwm)}),
      file=sys.stderr)
"""


def run_import(source: str, state: Path, env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run(
        [
            *(sys.executable, "-c", CHILD, "import", "--dry-run", "-q", source),
            *("--state-dir", str(state), "--log-format", "json"),
        ],
        check=False,
        capture_output=True,
        text=True,
        env=env,
    )
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("BENCH ")]
    if not lines:
        raise SystemExit(f"import failed:\n{out.stderr[-3000:]}")
    result = json.loads(lines[-1][len("BENCH ") :])
    if result["code"] not in (0, 3):
        raise SystemExit(f"import exited {result['code']}:\n{out.stderr[-3000:]}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--parts", type=int, default=10)
    args = parser.parse_args()

    per = args.rows // args.parts
    with local_s3() as s3, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "events"
        size = 0
        for part in range(args.parts):
            day = f"2025-03-{1 + part // 2:02d}"
            path = root / f"date={day}" / f"part-{part:05d}.parquet"
            # one seed per part: distinct events, as an export's parts are
            write_events_parquet(path, per, seed=100 + part)
            s3.client.upload_file(str(path), "bench", f"events/{path.relative_to(root)}")
            size += path.stat().st_size
        print(
            f"{per * args.parts:,} events in {args.parts} Parquet parts "
            f"({size / 1e6:.0f} MB); machine shared, one run"
        )
        local = run_import(str(root), Path(tmp) / "st-local", s3.env)
        remote = run_import("s3://bench/events/", Path(tmp) / "st-s3", s3.env)
    rows = per * args.parts
    print(f"{'source':<8}{'seconds':>9}{'rows/s':>12}{'peak RSS MiB':>14}")
    for name, r in (("disk", local), ("s3", remote)):
        print(f"{name:<8}{r['s']:>9.2f}{rows / r['s']:>12,.0f}{r['hwm_kb'] / 1024:>14.0f}")
    print(
        f"s3/disk: time {remote['s'] / local['s']:.2f}x, "
        f"peak RSS {remote['hwm_kb'] / local['hwm_kb']:.2f}x"
    )


if __name__ == "__main__":
    main()
