"""Reconcile diff vs a plain polars join of the same two frames, same run.

    python benchmarks/reconcile.py                 # 200k remote + 200k local, 10 % changed
    python benchmarks/reconcile.py --rows 1000000  # bigger

The target (issue 5): the diff itself (excluding listing Kraiter) takes at most 3x a
plain ``local.join(remote, on email)``. Both frames are built first (the remote one
through ``remote.remote_frame``, exactly as a listing would build it), then each
operation is timed several times and the best run is compared.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import polars as pl

from kraiter_sync.plan.contacts import diff_contacts
from kraiter_sync.plan.snapshot import remote_frame

PLANS = ["free", "starter", "pro", "business"]


def local_frame(rows: int) -> pl.DataFrame:
    """Canonical local contacts: user{i}@example.com with 4 properties each."""
    idx = pl.int_range(0, rows, eager=True)
    return pl.DataFrame(
        {
            "email": [f"user{i}@example.com" for i in range(rows)],
            "user_id": [f"u{i}" if i % 3 else None for i in range(rows)],
            "properties": [
                f'{{"city":"City {i % 97}","plan":"{PLANS[i % 4]}","score":{i % 1000},'
                f'"vip":{"true" if i % 11 == 0 else "false"}}}'
                for i in range(rows)
            ],
            "source_file": "contacts.csv",
            "source_row": idx + 1,
        }
    )


def remote_contacts(
    rows: int, changed_every: int, *, extra: bool = False
) -> list[dict[str, object]]:
    """Kraiter's side: the same contacts, every ``changed_every``-th one different.

    ``extra`` gives every remote contact one property the local rows lack (set in Kraiter
    by someone else): the worst case, where no row's JSON text matches exactly.
    """
    out: list[dict[str, object]] = []
    for i in range(rows):
        props: dict[str, object] = {
            "city": f"City {i % 97}",
            "plan": PLANS[i % 4],
            "score": i % 1000,
            "vip": i % 11 == 0,
        }
        if extra:
            props["crm_score"] = i % 7
        if i % changed_every == 0:
            props["plan"] = PLANS[(i + 1) % 4]
            props["last_login"] = "2026-01-01T00:00:00.000Z"
        out.append(
            {
                "id": f"cnt_{i:010d}",
                "email": f"User{i}@Example.com" if i % 50 == 0 else f"user{i}@example.com",
                "userId": f"u{i}" if i % 3 else None,
                "properties": props,
                "createdAt": "2026-01-01T00:00:00.000Z",
                "updatedAt": "2026-01-02T00:00:00.000Z",
            }
        )
    return out


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--changed", type=float, default=0.10, help="share of changed contacts")
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument(
        "--extra-remote-property",
        action="store_true",
        help="worst case: every Kraiter contact has a property the input lacks",
    )
    args = parser.parse_args()

    local = local_frame(args.rows)
    remote = remote_frame(
        remote_contacts(
            args.rows, max(1, round(1 / args.changed)), extra=args.extra_remote_property
        )
    )

    def plain_join() -> pl.DataFrame:
        return local.join(remote, left_on="email", right_on="key", how="full")

    def diff() -> object:
        return diff_contacts(local, remote)

    plan = diff_contacts(local, remote)
    # Alternate the two in one loop so both see the same machine load (the host is
    # shared); compare the best of each and the median of the per-round ratios.
    joins, diffs = [], []
    for _ in range(args.repeat):
        joins.append(timed(plain_join))
        diffs.append(timed(diff))
    join_s, diff_s = min(joins), min(diffs)
    ratios = sorted(d / j for j, d in zip(joins, diffs, strict=True))
    median = ratios[len(ratios) // 2]
    print(f"rows: {args.rows:,} local, {remote.height:,} remote; plan: {plan.counts()}")
    print(f"plain join on email : {join_s * 1000:8.1f} ms (best of {args.repeat})")
    print(f"reconcile diff      : {diff_s * 1000:8.1f} ms (best of {args.repeat})")
    ratio = diff_s / join_s
    verdict = "ok" if ratio <= 3 else "MISSED"
    print(f"ratio of bests      : {ratio:8.2f}x  (target <= 3x: {verdict})")
    print(f"median round ratio  : {median:8.2f}x")


if __name__ == "__main__":
    main()
