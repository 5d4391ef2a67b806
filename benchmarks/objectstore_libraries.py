"""Which object-store library to read sources through: obstore, fsspec (s3fs), polars.

    python benchmarks/objectstore_libraries.py              # 2M events, a 3-part export
    python benchmarks/objectstore_libraries.py --rows 500000

A local S3 (moto's ``ThreadedMotoServer``, real HTTP on 127.0.0.1) holds one Parquet
events file and the same rows as a gzipped CSV. Each candidate then reads every row in
a fresh subprocess the way ``sources.py`` reads a local file (pyarrow batches for
Parquet, a decompressing stream for CSV), and the script prints rows/s, MB/s of object
bytes and peak RSS (VmHWM) for each, plus local disk as the baseline:

- ``obstore``: kraiter-sync's readers over obstore (``kraiter_sync.sources.objectstore.readers``:
  8 MiB range GETs read one ahead for sequential formats, range GETs with a 16 MiB
  read-ahead for Parquet);
- ``fsspec``: ``s3fs.S3FileSystem.open`` (the same, through botocore);
- ``polars``: ``pl.scan_parquet`` / ``pl.scan_csv`` on the ``s3://`` URL with
  ``storage_options``, collected in streaming mode (Parquet and plain CSV only: polars
  reads no gzip stream from object storage, and its listing and ETags are not exposed).

Absolute numbers mean little on a shared machine; compare the lines of one run.
"""

from __future__ import annotations

import argparse
import gzip
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from datagen import write_events_parquet
from local_s3 import local_s3

CHILD = r"""
import contextlib, gzip, io, os, sys, time
how, what, where = sys.argv[1], sys.argv[2], sys.argv[3]
endpoint = os.environ.get("BENCH_ENDPOINT", "")
import pyarrow.parquet as pq
import polars as pl
t = time.perf_counter()
rows = 0

def opener():
    if how == "local":
        return open(where, "rb")
    if how == "obstore":  # kraiter-sync's readers over obstore (the product's path)
        from kraiter_sync.sources.objectstore import open_bucket, parse_url
        from kraiter_sync.sources.objectstore.readers import RangeReader, SequentialReader
        url = parse_url("s3://bench/" + where)
        bucket = open_bucket(url)
        info = bucket.head(url.key)
        if what == "csv":  # sequential: range blocks, one ahead
            return io.BufferedReader(SequentialReader(bucket, info), 1 << 20)
        return RangeReader(bucket, info)
    if how == "fsspec":
        import s3fs
        fs = s3fs.S3FileSystem(endpoint_url=endpoint)
        return fs.open("bench/" + where, "rb", block_size=8 << 20)
    raise SystemExit(how)

if how == "polars":
    opts = {"aws_endpoint_url": endpoint, "aws_region": "us-east-1", "aws_allow_http": "true"}
    url = "s3://bench/" + where
    if what == "parquet":
        for df in pl.scan_parquet(url, storage_options=opts).collect_batches(chunk_size=100_000):
            rows += df.height
    else:
        rows = pl.scan_csv(url, storage_options=opts).select(pl.len()).collect().item()
elif what == "parquet":
    with opener() as fh:
        for batch in pq.ParquetFile(fh, pre_buffer=False).iter_batches(batch_size=100_000):
            rows += batch.num_rows
else:
    with opener() as raw, gzip.open(raw, "rb") as fh:
        header = fh.readline()
        while block := fh.read(16 << 20):
            rows += block.count(b"\n")
hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")][0].split()[1]
print(rows, time.perf_counter() - t, hwm)
"""


def run(how: str, what: str, where: str, env: dict[str, str]) -> tuple[int, float, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, how, what, where],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
        env={**env, "BENCH_ENDPOINT": env["AWS_ENDPOINT_URL"]},
    ).stdout.split()
    return int(out[0]), float(out[1]), int(out[2]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    args = parser.parse_args()

    import polars as pl

    with local_s3() as s3, tempfile.TemporaryDirectory() as tmp:
        parquet = write_events_parquet(Path(tmp) / "events.parquet", args.rows)
        csv_gz = Path(tmp) / "events.csv.gz"
        frame = pl.read_parquet(parquet).unnest("properties").drop("page")
        with gzip.open(csv_gz, "wb", compresslevel=1) as fh:
            frame.write_csv(fh)
        del frame
        sizes = {}
        for path in (parquet, csv_gz):
            s3.client.upload_file(str(path), "bench", path.name)
            sizes[path.name] = path.stat().st_size
        print(
            f"{args.rows:,} events; parquet {sizes['events.parquet'] / 1e6:.0f} MB, "
            f"csv.gz {sizes['events.csv.gz'] / 1e6:.0f} MB; machine shared, one run"
        )
        print(f"{'reader':<10}{'format':<9}{'rows/s':>12}{'MB/s':>8}{'peak RSS MiB':>14}")
        for what, name in (("parquet", "events.parquet"), ("csv", "events.csv.gz")):
            for how in ("local", "obstore", "fsspec", "polars"):
                if how == "polars" and what == "csv":
                    continue
                where = str(Path(tmp) / name) if how == "local" else name
                rows, seconds, rss = run(how, what, where, s3.env)
                mbs = sizes[name] / 1e6 / seconds
                print(f"{how:<10}{what:<9}{rows / seconds:>12,.0f}{mbs:>8.1f}{rss:>14.0f}")


if __name__ == "__main__":
    main()
