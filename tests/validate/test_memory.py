"""A huge field costs the validator almost nothing beyond the chunk that holds it.

Memory, not time: the validator (properties, originals, rejects file) used to copy a
rejected 50 MiB value about nine times (encoding it as JSON twice, filtering a struct
then taking its field apart); it now reads only its length and first characters. The
end-to-end ratio (reading included) is measured by ``benchmarks/huge_field.py``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CHILD = """
import sys
import polars as pl
from kraiter_sync.state.rejects import RejectsWriter
from kraiter_sync.validate import ChunkedValidation

def status(key):
    line = [ln for ln in open("/proc/self/status") if ln.startswith(key)][0]
    return int(line.split()[1]) // 1024

big = "x" * (50 << 20)
columns = {
    "email": ["ada@example.com", "bob@example.com"],
    "name": ["signed_up", "signed_up"],
    "timestamp": ["2024-01-01T00:00:00Z"] * 2,
    "properties": pl.select(pl.struct(pl.Series("note", ["plain", "small"]))).to_series(),
}
if sys.argv[2] == "properties":
    columns["properties"] = pl.select(pl.struct(pl.Series("note", [big, "small"]))).to_series()
else:
    columns[sys.argv[2]] = [big, columns[sys.argv[2]][1]]
mapped = pl.DataFrame(columns)
del big, columns
open("/proc/self/clear_refs", "w").write("5")  # the peak starts from here
before = status("VmRSS")
with RejectsWriter(sys.argv[1]) as writer:
    run = ChunkedValidation(kind="events", on_rejects=writer.write)
    for _valid in run.run([mapped]):
        pass
assert run.report.rejected == 1 and run.report.valid == 1, run.report
print(status("VmHWM") - before)
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("field", ["properties", "email", "name", "timestamp"])
def test_a_rejected_50_mib_value_adds_less_than_its_size(tmp_path: Path, field: str) -> None:
    rejects = tmp_path / "rejects.csv"
    root = str(Path(__file__).resolve().parents[2])
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(rejects), field],
        check=True,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": root, "PATH": "/usr/bin:/bin", "POLARS_MAX_THREADS": "2"},
    )
    added_mib = int(out.stdout.split()[-1])
    assert added_mib < 50, f"the validator added {added_mib} MiB for a 50 MiB value"
    assert rejects.stat().st_size < 5_000  # the value is cut in the rejects file
