"""Peak memory of streaming a file through sources.iter_chunks, small vs large input.

    python benchmarks/read_memory.py                 # 1M vs 5M rows
    python benchmarks/read_memory.py --large 10000000

For each format (Parquet; gzipped CSV, which is decompressed to a temporary file
first) it generates the same events at two sizes, then reads every chunk in a fresh
subprocess and prints peak RSS and the large/small ratio. Flat memory means a ratio
near 1 however large the input. The same files are then read from a local S3 (moto's
server on 127.0.0.1): objects are streamed in bounded range requests, never downloaded
first, so their ratio must be flat too.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from datagen import write_events_parquet
from local_s3 import local_s3

# VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork+exec, so a child would
# report the (large) peak of this parent process.
CHILD = """
import sys, time
from kraiter_sync.sources import iter_chunks
t = time.perf_counter()
rows = 0
for chunk in iter_chunks(sys.argv[1], chunk_size=100_000):
    rows += chunk.height
hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")][0].split()[1]
print(rows, time.perf_counter() - t, hwm)
"""


def measure(path: Path | str, env: dict[str, str] | None = None) -> tuple[int, float, float]:
    repo = str(Path(__file__).resolve().parent.parent)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)],
        check=True,
        capture_output=True,
        text=True,
        env=env or {"PYTHONPATH": repo, "PATH": "/usr/bin:/bin", "POLARS_MAX_THREADS": "2"},
    ).stdout.split()
    return int(out[0]), float(out[1]), int(out[2]) / 1024


def to_csv_gz(parquet: Path, target: Path) -> Path:
    import polars as pl

    frame = pl.read_parquet(parquet).unnest("properties").drop("page")
    with gzip.open(target, "wb", compresslevel=1) as fh:
        frame.write_csv(fh)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1_000_000)
    parser.add_argument("--large", type=int, default=5_000_000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="kraiter-bench-"))
    try:
        results: dict[str, dict[str, tuple[int, float, float]]] = {}
        with local_s3() as s3:
            for label, rows in (("small", args.small), ("large", args.large)):
                pq = write_events_parquet(tmp / f"{label}.parquet", rows, seed=7)
                gz = to_csv_gz(pq, tmp / f"{label}.csv.gz")
                results[label] = {"parquet": measure(pq), "csv.gz": measure(gz)}
                for path in (pq, gz):
                    s3.client.upload_file(str(path), "bench", path.name)
                results[label]["s3 parquet"] = measure(f"s3://bench/{pq.name}", s3.env)
                results[label]["s3 csv.gz"] = measure(f"s3://bench/{gz.name}", s3.env)
        for fmt in ("parquet", "csv.gz", "s3 parquet", "s3 csv.gz"):
            s_rows, s_sec, s_mb = results["small"][fmt]
            l_rows, l_sec, l_mb = results["large"][fmt]
            print(
                f"{fmt:10} {s_rows:>11,} rows: {s_mb:7.0f} MB peak, {s_sec:6.1f} s | "
                f"{l_rows:>11,} rows: {l_mb:7.0f} MB peak, {l_sec:6.1f} s | "
                f"RSS ratio {l_mb / s_mb:.2f} for {l_rows / s_rows:.0f}x rows"
            )
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
