"""Peak memory of validating one row whose property is a huge string, as a ratio to it.

    python benchmarks/huge_field.py              # a 200 MiB field
    python benchmarks/huge_field.py --mib 50

The row is rejected: from CSV as ``properties.value_too_long`` (the rejects file holds
its first 1,000 characters and its length); from NDJSON as ``row.too_large`` when its
line is over ``sources.ndjson.MAX_LINE_BYTES`` (16 MiB: measured while streaming past,
never parsed), else as ``properties.value_too_long``. For CSV and NDJSON the script
writes two rows (the huge one, then an ordinary one), runs ``validate_inputs`` (what
``kraiter-sync validate`` does: read, map, validate, write the rejects file) in a fresh
subprocess and prints the peak RSS (``VmHWM``) over the field's size and the wall time;
an NDJSON line with a 15 MiB field (parsed: under the line limit) is measured too; a
last line measures the validator alone, given the mapped frame already in memory (its
peak minus its RSS before). The target is at most 3x the field end to end.

An empty Python with polars imported already holds about 90 MB: that baseline is part
of the ratio, as it is of what a user sees.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork+exec.
END_TO_END = """
import sys
from kraiter_sync import InputOptions, validate_inputs
result = validate_inputs([sys.argv[1]], options=InputOptions(), rejects_path=sys.argv[2])
assert result.rejected == 1 and result.exit_code == 3, result.reports
hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")][0].split()[1]
print(hwm)
"""

VALIDATOR = """
import sys
import polars as pl
from kraiter_sync.connectors import apply, resolve_connector
from kraiter_sync.state.rejects import RejectsWriter
from kraiter_sync.sources import open_source
from kraiter_sync.validate import ChunkedValidation

def status(key):
    line = [ln for ln in open("/proc/self/status") if ln.startswith(key)][0]
    return int(line.split()[1])

with open_source(sys.argv[1]) as source:
    connector = resolve_connector(source.schema.names()).connector
    mapped = [apply(connector, chunk) for chunk in source.iter_chunks()]
open("/proc/self/clear_refs", "w").write("5")  # peak := now
before = status("VmRSS")
with RejectsWriter(sys.argv[2]) as writer:
    run = ChunkedValidation(kind="events", on_rejects=writer.write)
    for _valid in run.run(mapped):
        pass
assert run.report.rejected == 1, run.report
print(status("VmHWM") - before)
"""


def write_ndjson(path: Path, mib: int) -> Path:
    big = "x" * (mib << 20)
    with path.open("w") as fh:
        head = '{"email":"ada@example.com","event":"signed_up","timestamp":"2024-01-01T00:00:00Z"'
        fh.write(f'{head},"note":"{big}"}}\n')
        fh.write('{"email":"bob@example.com","event":"signed_up",')
        fh.write('"timestamp":"2024-01-01T00:00:00Z","note":"small"}\n')
    return path


def write_inputs(directory: Path, mib: int) -> dict[str, Path]:
    big = "x" * (mib << 20)
    csv = directory / "huge.csv"
    with csv.open("w") as fh:
        fh.write("email,event,timestamp,note\n")
        fh.write(f"ada@example.com,signed_up,2024-01-01T00:00:00Z,{big}\n")
        fh.write("bob@example.com,signed_up,2024-01-01T00:00:00Z,small\n")
    del big
    return {"csv": csv, "ndjson": write_ndjson(directory / "huge.ndjson", mib)}


def child(code: str, *args: str) -> int:
    repo = str(Path(__file__).resolve().parent.parent)
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        check=True,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": repo, "PATH": "/usr/bin:/bin", "POLARS_MAX_THREADS": "2"},
    ).stdout.split()
    return int(out[-1])  # KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=200, help="size of the field (MiB)")
    args = parser.parse_args()
    field_kib = args.mib * 1024
    with tempfile.TemporaryDirectory(prefix="kraiter-huge-") as tmp:
        inputs = write_inputs(Path(tmp), args.mib)
        print(f"field: {args.mib} MiB; peak RSS / field (target <= 3.0)")
        parsed = write_ndjson(Path(tmp) / "parsed.ndjson", 15)
        runs = [(f"{fmt} {args.mib} MiB", path, field_kib) for fmt, path in inputs.items()]
        runs.append(("ndjson 15 MiB", parsed, 15 * 1024))
        for label, path, kib in runs:
            rejects = str(Path(tmp) / f"rejects-{path.stem}.csv")
            started = time.perf_counter()
            peak = child(END_TO_END, str(path), rejects)
            took = time.perf_counter() - started
            size = Path(rejects).stat().st_size
            print(
                f"  validate {label:<15} {peak / 1024:8.0f} MiB  {peak / kib:5.2f}x"
                f"  {took:6.1f} s  (rejects file {size:,} bytes)"
            )
        added = child(VALIDATOR, str(inputs["csv"]), str(Path(tmp) / "rejects-v.csv"))
        print(f"  validator alone, added to the mapped chunk: {added / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
