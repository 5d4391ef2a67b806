"""Reconcile, the pure part: local contacts vs Kraiter's contacts → a plan.

Nothing here talks to Kraiter: :func:`diff_contacts` takes two frames and returns a
:class:`ContactPlan`, so the diff can be tested exhaustively (hypothesis) and timed
against a plain join (``benchmarks/reconcile.py``). Fetching the remote frame lives in
:mod:`kraiter_sync.plan.snapshot`; applying a plan in :mod:`kraiter_sync.verbs.apply`.

Both sides are keyed by the *normalised* email (the validator's normalisation, so
``Alice@Example.com`` in Kraiter is the same contact as ``alice@example.com`` locally).
Every local contact lands in exactly one of ``create`` / ``update`` / ``unchanged``, and
every remote contact in exactly one of ``update`` / ``unchanged`` / ``remote_only``
(``delete`` in mirror mode).

Properties are compared key by key on their canonical JSON texts
(``validate.keys.canonical_json``: types count, so ``30`` in Kraiter differs from
``30.0`` from a Parquet float column, and ``1`` from ``true``). A property Kraiter has but
the local row lacks is left alone unless ``mirror_properties`` (then it is removed by
sending ``null``). A missing local ``user_id`` never clears Kraiter's.

The diff is vectorised: a full join on the key, string equality for the common case
(identical canonical JSON), and only the rows that differ are split into key/value
pairs (a regex over the flat, compact JSON) and compared pair by pair.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import polars as pl
import polars_hash as plh

from kraiter_sync.frames import PLAN_SCHEMA

__all__ = [
    "ACTIONS",
    "LOCAL_COLUMNS",
    "PLAN_SCHEMA",
    "REMOTE_SCHEMA",
    "Action",
    "ContactPlan",
    "contact_hash",
    "contact_hashes",
    "diff_contacts",
]

Action = Literal["create", "update", "unchanged", "remote_only", "delete"]
ACTIONS: tuple[Action, ...] = ("create", "update", "unchanged", "remote_only", "delete")

#: Columns the diff needs from the local (canonical, validated) contacts frame.
LOCAL_COLUMNS = ("email", "user_id", "properties", "source_file", "source_row")

#: The remote contacts frame (built by :func:`kraiter_sync.plan.snapshot.remote_frame`).
REMOTE_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.String(),
    "email": pl.String(),  # as Kraiter stores it (keeps the first-sent case)
    "key": pl.String(),  # normalised email: the join key
    "user_id": pl.String(),
    "properties": pl.String(),  # canonical JSON: flat, keys sorted, compact
    "created_at": pl.String(),
    "updated_at": pl.String(),
    "hash": pl.String(),  # snapshot_digest(): what the plan depends on
    "raw": pl.String(),  # the whole contact object as JSON (tombstones)
}

#: One ``"key":value`` pair of flat compact JSON (values: string, number, bool, null).
_PAIR = r'"(?:[^"\\]|\\.)*":(?:"(?:[^"\\]|\\.)*"|[^,}]*)'
#: Where ``,"`` may not be a pair separator (a string ending in a comma).
_AMBIGUOUS_SEPARATOR = r',"[,}:]'
_BACKSLASH = "\\"
#: One ``key":value`` pair of a flat compact JSON object, without its opening quote.
_EXACT_PAIR = r'^((?:[^"\\]|\\.)*)":(.*)$'


def contact_hash(properties: str | None, user_id: str | None) -> str:
    """Hash of what would be written for a contact (its canonical properties and user
    id): equal hash, nothing to send. The ledger's contact cache keeps it per email."""
    text = f"{user_id or ''}\x1f{properties or '{}'}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def contact_hashes(frame: pl.DataFrame) -> pl.Series:
    """:func:`contact_hash` of every row of a canonical contacts frame, vectorised."""
    text = frame.select(
        pl.concat_str(
            [pl.col("user_id").fill_null(""), pl.col("properties").fill_null("{}")],
            separator="\x1f",
        ).alias("t")
    )
    return text.select(plh.col("t").chash.sha2_256().str.slice(0, 32)).to_series()


@dataclass
class ContactPlan:
    """What reconciling would do: one row per contact (see :data:`PLAN_SCHEMA`).

    ``remote_complete`` is False when Kraiter was read by per-email lookups: then the
    remote-only contacts are unknown (and mirror mode is impossible).
    """

    rows: pl.DataFrame
    mirror: bool = False
    mirror_properties: bool = False
    strategy: str = ""
    remote_count: int | None = None
    remote_complete: bool = True
    remote_duplicates: int = 0
    #: Which Kraiter the plan was computed against (``Settings.target``: base URL and a
    #: key fingerprint, never the key); a saved plan is only applied to the same one.
    target: str | None = None
    created_at: str = field(
        default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    )

    def of(self, action: Action) -> pl.DataFrame:
        """The rows with one action."""
        return self.rows.filter(pl.col("action") == action)

    def counts(self) -> dict[str, int]:
        """Rows per action (every action present, zero when none)."""
        found = dict(self.rows.group_by("action").len().iter_rows())
        return {a: int(found.get(a, 0)) for a in ACTIONS}

    @property
    def writes(self) -> int:
        """How many write requests applying this plan takes."""
        c = self.counts()
        return c["create"] + c["update"] + c["delete"]

    @property
    def is_empty(self) -> bool:
        """True when applying the plan would change nothing in Kraiter."""
        return self.writes == 0

    @classmethod
    def from_saved(cls, meta: Mapping[str, Any], rows: pl.DataFrame) -> ContactPlan:
        """A plan read back from a plan file (``state.plans``)."""
        return cls(
            rows=rows,
            mirror=bool(meta.get("mirror")),
            mirror_properties=bool(meta.get("mirror_properties")),
            strategy=str(meta.get("strategy") or ""),
            remote_count=meta.get("remote_count"),
            remote_complete=bool(meta.get("remote_complete", True)),
            remote_duplicates=int(meta.get("remote_duplicates") or 0),
            target=meta.get("target"),
            created_at=str(meta.get("created_at") or ""),
        )

    def meta(self) -> dict[str, Any]:
        """The plan-level facts saved beside the rows."""
        return {
            "format": "kraiter-sync.plan",
            "version": 1,
            "kind": "contacts",
            "created_at": self.created_at,
            "mirror": self.mirror,
            "mirror_properties": self.mirror_properties,
            "strategy": self.strategy,
            "remote_count": self.remote_count,
            "remote_complete": self.remote_complete,
            "remote_duplicates": self.remote_duplicates,
            "target": self.target,
            "counts": self.counts(),
        }


_LOCAL_TYPES: dict[str, pl.DataType] = {
    "email": pl.String(),
    "user_id": pl.String(),
    "properties": pl.String(),
    "source_file": pl.String(),
    "source_row": pl.Int64(),
}
_REMOTE_TYPES: dict[str, pl.DataType] = {
    name: pl.String()
    for name in ("id", "email", "key", "user_id", "properties", "updated_at", "hash")
}


def _conform(
    frame: pl.DataFrame, types: Mapping[str, pl.DataType], required: tuple[str, ...], what: str
) -> pl.DataFrame:
    """Select and type the columns the diff needs, copying nothing that is already right."""
    missing = [c for c in required if c not in frame.columns]
    if missing:
        msg = f"the {what} lacks the column(s) {', '.join(missing)}"
        raise ValueError(msg)
    exprs = []
    for name, dtype in types.items():
        if name not in frame.columns:
            exprs.append(pl.lit(None, dtype).alias(name))
        elif frame.schema[name] != dtype:
            exprs.append(pl.col(name).cast(dtype))
        else:
            exprs.append(pl.col(name))
    out = frame.select(exprs)
    key = required[0]
    if out[key].null_count():
        out = out.filter(pl.col(key).is_not_null())
    if out["properties"].null_count():
        out = out.with_columns(pl.col("properties").fill_null("{}"))
    return out


def _check_local(local: pl.DataFrame) -> pl.DataFrame:
    return _conform(
        local, _LOCAL_TYPES, ("email", "properties"), "local contacts frame (use the validator's)"
    )


def _dedupe_local(local: pl.DataFrame) -> pl.DataFrame:
    """The validator merges same-email rows; a hand-built frame may not (last row wins)."""
    return local.unique("email", keep="last", maintain_order=True)


def _check_remote(remote: pl.DataFrame) -> pl.DataFrame:
    return _conform(
        remote,
        _REMOTE_TYPES,
        ("key", "id", "properties"),
        "remote contacts frame (build it with remote.remote_frame)",
    )


def _dedupe_remote(remote: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Two Kraiter contacts whose emails normalise alike (e.g. IDNA forms): keep the
    oldest (lowest id); the others are left out of the plan and counted."""
    out = remote.sort("id").unique("key", keep="first", maintain_order=True)
    return out, remote.height - out.height


def _pair_list(column: str, *, tricky_rows: bool) -> pl.Expr:
    """Flat compact JSON objects → per row, the list of pair texts ``key":value``.

    Inside a JSON string every ``"`` is escaped, so ``,"`` separates two pairs unless a
    string ends in a comma (``"x,"``: then ``,"`` is followed by ``,``, ``}`` or ``:``).
    Rows are split with a plain string split; when some row could fool it
    (``tricky_rows``), those rows go through an exact regex instead.
    """
    text = pl.col(column)
    # "{}" → "" → [""]: never null, so set differences against it work; "" is dropped later
    plain = text.str.slice(2, pl.max_horizontal(text.str.len_chars() - 3, 0)).str.split(',"')
    if not tricky_rows:
        return plain
    exact = text.str.extract_all(_PAIR).list.eval(pl.element().str.slice(1))
    return pl.when(text.str.contains(_AMBIGUOUS_SEPARATOR)).then(exact).otherwise(plain)


def _key_values(pairs: pl.DataFrame, side: str) -> pl.DataFrame:
    """Pair texts → (``i``, ``prop``, value text); JSON nulls are dropped.

    The first ``":`` ends the key unless the key holds an escaped quote or backslash;
    those rare pairs (found after the cheap split) are split again with an exact regex.
    ``prop`` stays JSON-escaped.
    """
    kv = (
        pairs.filter(pl.col("p") != "")
        .select(
            "i",
            "p",
            pl.col("p").str.splitn('":', 2).struct.rename_fields(["prop", side]).alias("s"),
        )
        .unnest("s")
    )
    odd = pl.col("prop").str.contains(_BACKSLASH, literal=True)
    if kv.select(odd.any()).item():
        exact = kv.filter(odd).select(
            "i",
            "p",
            pl.col("p")
            .str.extract_groups(_EXACT_PAIR)
            .struct.rename_fields(["prop", side])
            .alias("s"),
        )
        kv = pl.concat([kv.filter(~odd), exact.unnest("s")])
    return kv.select("i", "prop", side).filter(pl.col(side) != "null")


def _same_value(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    """Whether two JSON value texts have the same canonical form (``canonical_json``).

    Strings, booleans and integers have one JSON text each, so equal means the same
    text. A float may be written two ways (polars writes ``1e-5`` or ``0.00001`` for
    what Python writes ``1e-05``), so two float texts (with ``.`` or ``e``) are equal
    when they hold the same float with the same sign (``-0.0`` is not ``0.0``). An
    integer never equals a float: ``30`` is not ``30.0``.
    """
    number = r"^-?[0-9]"
    is_float = r"[.eE]"
    floats = (
        a.str.contains(number)
        & b.str.contains(number)
        & a.str.contains(is_float)
        & b.str.contains(is_float)
        & (a.str.starts_with("-") == b.str.starts_with("-"))
    )
    as_float = a.cast(pl.Float64, strict=False) == b.cast(pl.Float64, strict=False)
    return (a == b) | (floats & as_float.fill_null(False))


def _property_changes(candidates: pl.DataFrame, *, mirror_properties: bool) -> pl.DataFrame:
    """Changed properties of the rows whose JSON differs: row, prop, old, new (JSON texts).

    ``row`` is the candidate's row number in the joined frame.
    """
    rows = candidates.select(pl.col("row").alias("i"), "properties", "r_properties")
    tricky = rows.select(
        pl.any_horizontal(
            pl.col("properties", "r_properties").str.contains(_AMBIGUOUS_SEPARATOR).any()
        )
    ).item()
    mine = _pair_list("properties", tricky_rows=tricky)
    theirs = _pair_list("r_properties", tricky_rows=tricky)
    # Pairs with the same text on both sides are equal: a per-row set difference drops
    # them, so only the few that differ are split into key and value and compared.
    lists = rows.select("i", mine.alias("mine"), theirs.alias("theirs"))
    local = _key_values(
        lists.select("i", pl.col("mine").list.set_difference("theirs").alias("p")).explode("p"),
        "new",
    )
    # Kraiter's side is only needed for the old values of what changed locally — unless
    # properties are mirrored (then Kraiter-only keys are removals): when Kraiter
    # contacts carry extra properties, most candidate rows need no remote split at all.
    if not mirror_properties:
        lists = lists.join(local.select("i").unique(), on="i", how="semi")
    remote = _key_values(
        lists.select("i", pl.col("theirs").list.set_difference("mine").alias("p")).explode("p"),
        "old",
    )
    how: Literal["full", "left"] = "full" if mirror_properties else "left"
    # Row order is kept (local's sorted keys first), so no sort is needed for stable output.
    return (
        local.join(remote, on=["i", "prop"], how=how, coalesce=True, maintain_order="left")
        .filter(
            pl.col("old").is_null()
            | pl.col("new").is_null()
            | ~_same_value(pl.col("new"), pl.col("old")).fill_null(False)
        )
        .select(pl.col("i").alias("row"), "prop", "old", "new")
    )


def _changes_json(props: pl.DataFrame, user_ids: pl.DataFrame) -> pl.DataFrame:
    """Per changed contact (its row number): ``changes``, ``patch`` and ``uid_new``.

    ``changes`` is ``{"properties": {k: [old, new]}, "userId": [old, new]}``, ``patch``
    the properties object to PATCH (a null value removes a key), ``uid_new`` the user id
    to set (null = leave it). Built only for the contacts that change.
    """
    pair = pl.concat_str(
        pl.lit('"'),
        pl.col("prop"),
        pl.lit('":['),
        pl.col("old").fill_null("null"),
        pl.lit(","),
        pl.col("new").fill_null("null"),
        pl.lit("]"),
    )
    patch = pl.concat_str(
        pl.lit('"'), pl.col("prop"), pl.lit('":'), pl.col("new").fill_null("null")
    )
    # Eager on purpose: for these small frames the lazy engine's set-up cost dominates.
    # agg into lists, then list.join: several times faster than str.join in the agg.
    per_key = (
        props.select("row", pair.alias("pair"), patch.alias("patch"))
        .group_by("row")
        .agg("pair", "patch")
        .with_columns(pl.col("pair").list.join(","), pl.col("patch").list.join(","))
    )
    uid = user_ids.select(
        "row",
        pl.col("user_id").alias("uid_new"),
        pl.concat_str(
            pl.lit('"userId":['),
            _json_text(pl.col("r_user_id")),
            pl.lit(","),
            _json_text(pl.col("user_id")),
            pl.lit("]"),
        ).alias("uid_json"),
    )
    if user_ids.height:
        both = per_key.join(uid, on="row", how="full", coalesce=True)
    else:  # the common case: skip the join
        both = per_key.with_columns(
            pl.lit(None, pl.String).alias("uid_new"), pl.lit(None, pl.String).alias("uid_json")
        )
    return both.select(
        "row",
        pl.concat_str(
            pl.lit("{"),
            pl.concat_str(
                pl.concat_str(pl.lit('"properties":{'), pl.col("pair"), pl.lit("}")),
                pl.col("uid_json"),
                separator=",",
                ignore_nulls=True,
            ),
            pl.lit("}"),
        ).alias("changes"),
        pl.concat_str(pl.lit("{"), pl.col("patch").fill_null(""), pl.lit("}")).alias("patch"),
        "uid_new",
    )


def diff_contacts(
    local: pl.DataFrame,
    remote: pl.DataFrame,
    *,
    mirror: bool = False,
    mirror_properties: bool = False,
    remote_complete: bool = True,
    strategy: str = "",
) -> ContactPlan:
    """The plan that makes Kraiter (``remote``) agree with ``local``.

    ``local`` is the validator's canonical contacts frame; ``remote`` is
    :data:`REMOTE_SCHEMA` (``key`` = normalised email). With ``mirror`` the remote-only
    contacts become ``delete`` rows; with ``mirror_properties`` properties Kraiter has
    but the local row lacks are removed. Pure: no I/O.
    """
    if mirror and not remote_complete:
        msg = "mirror mode needs the complete list of Kraiter's contacts (listing, not lookups)"
        raise ValueError(msg)
    loc = _check_local(local)
    rem = _check_remote(remote)
    renamed = {c: f"r_{c}" for c in rem.columns if c != "key"}
    joined = loc.join(
        rem.rename(renamed), left_on="email", right_on="key", how="full", coalesce=False
    )
    in_local = pl.col("email").is_not_null()
    in_remote = pl.col("r_id").is_not_null()
    dupes = 0
    # Keys must be unique on both sides, checked without hashing every key again: with
    # unique keys a full join has |L| + |R| - |matched| rows (more: a key is repeated on
    # a matched side), and the unmatched local rows (creates) must be unique by email.
    matched, creates_unique = joined.select(
        (in_local & in_remote).sum().alias("matched"),
        pl.col("email").filter(~in_remote).is_unique().all().alias("unique"),
    ).row(0)
    if not creates_unique or joined.height != loc.height + rem.height - matched:
        if loc["email"].n_unique() != loc.height:
            loc = _dedupe_local(loc)
        if rem["key"].n_unique() != rem.height:
            rem, dupes = _dedupe_remote(rem)
        joined = loc.join(
            rem.rename(renamed), left_on="email", right_on="key", how="full", coalesce=False
        )
    # One lazy pass picks the matched rows that differ, gathering only compared columns.
    props_differ = pl.col("properties") != pl.col("r_properties")
    uid_differs = pl.col("user_id").is_not_null() & (
        pl.col("r_user_id").is_null() | (pl.col("user_id") != pl.col("r_user_id"))
    )
    differing = (
        joined.lazy()
        .with_row_index("row")
        .filter(in_local & in_remote & (props_differ | uid_differs))
        .select(
            "row",
            "properties",
            "r_properties",
            "user_id",
            "r_user_id",
            props_differ.alias("props_differ"),
            uid_differs.alias("uid_differs"),
        )
        .collect()
    )
    candidates = differing.filter("props_differ")
    user_ids = differing.filter("uid_differs")
    props = _property_changes(candidates, mirror_properties=mirror_properties)
    changes = _changes_json(props, user_ids)
    action = (
        pl.when(~in_remote)
        .then(pl.lit("create"))
        .when(~in_local)
        .then(pl.lit("delete" if mirror else "remote_only"))
        .when(pl.col("changes").is_not_null())
        .then(pl.lit("update"))
        .otherwise(pl.lit("unchanged"))
    )
    create = ~in_remote
    # The (few) changes are put beside the joined frame by row number (a numeric
    # scatter of positions, then one gather per column): joining them back would
    # re-gather every column of the big frame.
    pos = (
        pl.Series("pos", dtype=pl.UInt32)
        .extend_constant(None, joined.height)
        .scatter(changes["row"], pl.int_range(changes.height, dtype=pl.UInt32, eager=True))
    )
    changed = changes.select("changes", "patch", "uid_new").select(pl.all().gather(pos))
    plan_rows = (
        pl.concat([joined, changed], how="horizontal")
        .lazy()
        .select(
            action.alias("action"),
            pl.when(in_local).then(pl.col("email")).otherwise(pl.col("r_email")).alias("email"),
            pl.col("r_id").alias("id"),
            pl.when(create).then(pl.col("user_id")).otherwise(pl.col("uid_new")).alias("user_id"),
            pl.when(create)
            .then(pl.col("properties"))
            .otherwise(pl.col("patch"))
            .alias("properties"),
            "changes",
            pl.col("r_updated_at").alias("remote_updated_at"),
            pl.col("r_hash").alias("remote_hash"),
            "source_file",
            "source_row",
        )
        .collect()
    )
    return ContactPlan(
        rows=plan_rows,
        mirror=mirror,
        mirror_properties=mirror_properties,
        strategy=strategy,
        remote_count=rem.height + dupes if remote_complete else None,
        remote_complete=remote_complete,
        remote_duplicates=dupes,
    )


def _json_text(expr: pl.Expr) -> pl.Expr:
    """A string column as JSON literals (``null`` for null), vectorised via json_encode."""
    return pl.struct(expr.alias("v")).struct.json_encode().str.slice(5).str.head(-1)
