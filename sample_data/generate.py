"""Regenerate every file in sample_data/ deterministically (fixed seed).

    python sample_data/generate.py

Writes the main inputs (contacts.csv, events.parquet) and one sample per connector
preset, each shaped like the vendor's documented export and each with a few
deliberately bad rows. The expected reject counts live in connectors/*.toml
(``expected_rejects``) and in sample_data/README.md; change them together.
"""

# ruff: noqa: S311  (seeded sample data, not cryptography)
from __future__ import annotations

import gzip
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

HERE = Path(__file__).resolve().parent
SEED = 20261127

FIRST = [
    "Alice",
    "Bruno",
    "Carla",
    "Dmitri",
    "Elena",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jonas",
    "Keiko",
    "Liam",
    "Maya",
    "Nadia",
    "Omar",
    "Priya",
    "Quentin",
    "Rosa",
    "Sven",
    "Tomás",
    "Uma",
    "Viktor",
    "Wen",
    "Ximena",
    "Yusuf",
    "Zoe",
    "Aisha",
    "Ben",
    "Chloé",
    "Diego",
]
LAST = [
    "Smith",
    "Müller",
    "Rossi",
    "Dubois",
    "Tanaka",
    "Kowalski",
    "Silva",
    "Jensen",
    "Novak",
    "Haddad",
    "Okafor",
    "Larsen",
    "Moreau",
    "Schmidt",
    "Costa",
    "Nguyen",
    "Fischer",
    "Ivanova",
    "Patel",
    "Romero",
    "Berg",
    "Lindqvist",
    "Keller",
    "Wagner",
]
DOMAINS = [
    "gmail.com",
    "outlook.com",
    "yahoo.com",
    "proton.me",
    "fastmail.com",
    "acme.io",
    "initech.com",
    "globex.co.uk",
    "umbrella.de",
    "hooli.xyz",
]
PLANS = ("free", "starter", "pro", "business")
COUNTRIES = ("US", "GB", "DE", "FR", "NL", "SE", "JP", "BR", "IN", "CA", "ES", "PL")
START = datetime(2024, 11, 1, tzinfo=UTC)
END = datetime(2026, 11, 1, tzinfo=UTC)
FUTURE = datetime(2031, 1, 1, 9, 0, tzinfo=UTC)


def _ascii(text: str) -> str:
    table = str.maketrans("üéáóíñçøåäö", "ueaoincoaao")
    return text.lower().translate(table)


def _people(rng: random.Random, n: int) -> list[dict[str, Any]]:
    seen: set[str] = set()
    people = []
    while len(people) < n:
        first, last = rng.choice(FIRST), rng.choice(LAST)
        sep = rng.choice([".", "_", ""])
        email = f"{_ascii(first)}{sep}{_ascii(last)}{rng.randint(1, 999)}@{rng.choice(DOMAINS)}"
        if email in seen:
            continue
        seen.add(email)
        signup = START + timedelta(seconds=rng.randint(0, int((END - START).total_seconds())))
        people.append(
            {
                "email": email,
                "first_name": first,
                "last_name": last,
                "user_id": f"usr_{len(people) + 1:05d}",
                "plan": rng.choices(PLANS, weights=(50, 25, 20, 5))[0],
                "country": rng.choice(COUNTRIES),
                "signup_date": signup.date().isoformat(),
                "signup_at": signup,
            }
        )
    return people


# --------------------------------------------------------------------------------------
# contacts.csv and events.parquet
# --------------------------------------------------------------------------------------

CONTACT_BAD_ROWS = [
    # invalid: no domain                    → rejected (email.invalid)
    {"email": "jane.doe@", "first_name": "Jane", "last_name": "Doe"},
    # invalid: no @ at all                  → rejected
    {"email": "support.acme.io", "first_name": "Support", "last_name": ""},
    # dotless domain                        → rejected
    {"email": "admin@localhost", "first_name": "Admin", "last_name": ""},
    # `Name <addr>` form: valid once unwrapped (accepted)
    {"email": "Carol King <carol.king@example.org>", "first_name": "Carol", "last_name": "King"},
    # whitespace and a mailto: prefix: valid once cleaned (accepted)
    {"email": "  mailto:dan.otto@example.net ", "first_name": "Dan", "last_name": "Otto"},
]


def contacts_and_events(rng: random.Random) -> tuple[pl.DataFrame, pl.DataFrame]:
    people = _people(rng, 1500)
    rows = [
        {k: p[k] for k in ("email", "first_name", "last_name", "user_id", "plan", "country")}
        | {"signup_date": p["signup_date"]}
        for p in people
    ]
    for i, bad in enumerate(CONTACT_BAD_ROWS):
        rows.insert(
            100 + i * 250,
            {
                "user_id": None,
                "plan": "free",
                "country": "US",
                "signup_date": "2025-06-01",
            }
            | bad,
        )
    # the same person again with different case: a duplicate, merged (last row wins)
    dup = dict(rows[10]) | {"email": rows[10]["email"].upper(), "plan": "pro"}
    rows.append(dup)
    contacts = pl.DataFrame(rows, schema_overrides={"user_id": pl.String})
    contacts = contacts.select(
        "email", "first_name", "last_name", "user_id", "plan", "country", "signup_date"
    )

    events: list[dict[str, Any]] = []
    for person in people[:900]:
        t = person["signup_at"]
        plan = "free"

        def add(name: str, when: datetime, person: dict[str, Any] = person, **props: Any) -> None:
            events.append(
                {
                    "email": person["email"],
                    "name": name,
                    "timestamp": when,
                    "properties": {
                        "plan": props.get("plan"),
                        "amount_cents": props.get("amount_cents"),
                        "currency": props.get("currency"),
                        "seats": props.get("seats"),
                        "page": props.get("page"),
                    },
                }
            )

        add(
            "signed_up",
            t,
            plan=plan,
            page={
                "path": "/signup",
                "referrer": rng.choice(["google", "newsletter", "twitter", None]),
            },
        )
        t += timedelta(minutes=rng.randint(2, 3000))
        if t < END and rng.random() < 0.7:
            add("viewed_pricing", t, page={"path": "/pricing", "referrer": None})
            t += timedelta(hours=rng.randint(1, 72))
        if t < END and rng.random() < 0.5:
            add("started_trial", t, plan="pro", seats=rng.randint(1, 10))
            t += timedelta(days=rng.randint(3, 14))
            if t < END and rng.random() < 0.6:
                plan = rng.choice(("starter", "pro", "business"))
                seats = rng.randint(1, 25)
                add("upgraded_plan", t, plan=plan, seats=seats)
                price = {"starter": 900, "pro": 2900, "business": 9900}[plan] * seats
                month = t
                while month < END and rng.random() < 0.93:
                    add("invoice_paid", month, plan=plan, amount_cents=price, currency="EUR")
                    month += timedelta(days=30)
                if month < END and rng.random() < 0.3:
                    add("cancelled_subscription", month, plan=plan)
        for _ in range(rng.randint(0, 3)):
            when = person["signup_at"] + timedelta(hours=rng.randint(1, 8000))
            if when < END:
                add(
                    "feature_used",
                    when,
                    page={
                        "path": rng.choice(["/reports", "/automations", "/segments", "/templates"]),
                        "referrer": None,
                    },
                )
    events.sort(key=lambda e: e["timestamp"])
    someone = people[3]["email"]
    bad_events = [
        # future timestamp (more than 5 minutes ahead)     → rejected (timestamp.future)
        {"email": someone, "name": "invoice_paid", "timestamp": FUTURE},
        {"email": people[4]["email"], "name": "feature_used", "timestamp": FUTURE},
        # empty name                                       → rejected (name.empty)
        {"email": people[5]["email"], "name": "  ", "timestamp": START + timedelta(days=40)},
        # reserved system event name                       → rejected (name.reserved)
        {"email": people[6]["email"], "name": "email.opened", "timestamp": START},
        # invalid email                                    → rejected (email.invalid)
        {"email": "not-an-email", "name": "signed_up", "timestamp": START + timedelta(days=2)},
        # unknown but valid email: accepted (the importer creates the contact first)
        {"email": "ghost.user@example.com", "name": "signed_up", "timestamp": START},
    ]
    for i, bad in enumerate(bad_events):
        events.insert(500 + i * 400, bad | {"properties": None})
    # an exact duplicate of an earlier event: counted as a duplicate, sent once
    events.insert(1000, dict(events[999]))
    props_type = pl.Struct(
        {
            "plan": pl.String,
            "amount_cents": pl.Int64,
            "currency": pl.String,
            "seats": pl.Int64,
            "page": pl.Struct({"path": pl.String, "referrer": pl.String}),
        }
    )
    frame = pl.DataFrame(
        events,
        schema={
            "email": pl.String,
            "name": pl.String,
            "timestamp": pl.Datetime("us", "UTC"),
            "properties": props_type,
        },
    )
    return contacts, frame


# --------------------------------------------------------------------------------------
# preset samples
# --------------------------------------------------------------------------------------


def _ts(rng: random.Random) -> datetime:
    return START + timedelta(seconds=rng.randint(0, int((END - START).total_seconds())))


def segment_tracks(rng: random.Random, people: list[dict[str, Any]]) -> list[pl.DataFrame]:
    """Segment warehouse `tracks` unloaded in two gzipped CSV parts (one header each)."""
    rows = []
    for i in range(16):
        p = people[i % len(people)]
        t = _ts(rng)
        rows.append(
            {
                "id": f"ajs-{rng.getrandbits(64):016x}",
                "anonymous_id": f"{rng.getrandbits(128):032x}",
                "user_id": p["user_id"],
                "context_traits_email": p["email"],
                "event": rng.choice(["Order Completed", "Product Viewed", "Signed Up"]),
                "event_text": "",
                "timestamp": t.isoformat().replace("+00:00", "Z"),
                "original_timestamp": t.isoformat(),
                "sent_at": (t + timedelta(seconds=1)).isoformat(),
                "received_at": (t + timedelta(seconds=2)).isoformat(),
                "uuid_ts": (t + timedelta(minutes=5)).isoformat(),
                "context_library_name": "analytics.js",
                "context_library_version": "4.1.0",
                "context_ip": f"203.0.113.{rng.randint(1, 254)}",
                "context_page_path": rng.choice(["/", "/pricing", "/checkout"]),
                "revenue": f"{rng.randint(5, 300)}.{rng.randint(0, 99):02d}",
                "currency": "USD",
            }
        )
    for r in rows:
        r["event_text"] = r["event"]
    rows[3]["context_traits_email"] = "bad-address@"  # rejected: invalid email
    rows[9]["timestamp"] = "2031-03-01T00:00:00Z"  # rejected: future
    rows[12]["event"] = "email.clicked"  # rejected: reserved name
    rows[12]["event_text"] = "email.clicked"
    frame = pl.DataFrame(rows)
    return [frame.slice(0, 8), frame.slice(8)]


def segment_identifies(rng: random.Random, people: list[dict[str, Any]]) -> pl.DataFrame:
    rows = []
    for p in people[:12]:
        t = _ts(rng)
        rows.append(
            {
                "id": f"ajs-{rng.getrandbits(64):016x}",
                "anonymous_id": f"{rng.getrandbits(128):032x}",
                "user_id": p["user_id"],
                "email": p["email"],
                "first_name": p["first_name"],
                "last_name": p["last_name"],
                "plan": p["plan"],
                "company_name": rng.choice(["Acme", "Initech", "Globex", None]),
                "created_at": p["signup_at"],
                "timestamp": t,
                "received_at": t + timedelta(seconds=2),
                "sent_at": t + timedelta(seconds=1),
                "original_timestamp": t,
                "uuid_ts": t + timedelta(minutes=5),
                "context_library_name": "analytics-python",
                "context_library_version": "2.3.2",
                "context_ip": f"198.51.100.{rng.randint(1, 254)}",
            }
        )
    rows[2]["email"] = "no-at-sign.example.com"  # rejected: invalid
    rows[7]["email"] = "root@intranet"  # rejected: dotless domain
    return pl.DataFrame(rows)


def _ga4_value(v: Any) -> dict[str, Any]:
    slot: dict[str, Any] = {
        "string_value": None,
        "int_value": None,
        "float_value": None,
        "double_value": None,
    }
    if isinstance(v, str):
        slot["string_value"] = v
    elif isinstance(v, int):
        slot["int_value"] = v
    else:
        slot["double_value"] = v
    return slot


def ga4(rng: random.Random, people: list[dict[str, Any]]) -> pl.DataFrame:
    """GA4 BigQuery export (events_YYYYMMDD) with nested event_params / user_properties."""
    rows = []
    for i in range(20):
        p = people[i % len(people)]
        t = _ts(rng)
        name = rng.choice(["page_view", "purchase", "sign_up", "add_to_cart"])
        params: dict[str, Any] = {
            "page_location": f"https://shop.example.com{rng.choice(['/', '/cart', '/p/42'])}",
            "ga_session_id": rng.randint(1_600_000_000, 1_800_000_000),
            "engagement_time_msec": rng.randint(10, 9000),
        }
        if name == "purchase":
            # GA4 stores "value" as double for some hits and int for others
            params["value"] = rng.choice([19.99, 45, 120.5])
            params["currency"] = "EUR"
        user_props: dict[str, Any] = {"email": p["email"], "plan": p["plan"]}
        rows.append(
            {
                "event_date": t.strftime("%Y%m%d"),
                "event_timestamp": int(t.timestamp() * 1_000_000),
                "event_name": name,
                "event_params": [{"key": k, "value": _ga4_value(v)} for k, v in params.items()],
                "event_previous_timestamp": None,
                "event_bundle_sequence_id": rng.randint(1, 10_000),
                "user_id": p["user_id"],
                "user_pseudo_id": f"{rng.randint(10**9, 10**10)}.{rng.randint(10**9, 10**10)}",
                "user_properties": [
                    {"key": k, "value": _ga4_value(v) | {"set_timestamp_micros": None}}
                    for k, v in user_props.items()
                ],
                "user_first_touch_timestamp": int(p["signup_at"].timestamp() * 1_000_000),
                "device": {
                    "category": rng.choice(["desktop", "mobile", "tablet"]),
                    "operating_system": rng.choice(["Windows", "iOS", "Android", "Macintosh"]),
                    "language": "en-us",
                },
                "geo": {"continent": "Europe", "country": "Germany", "city": "Berlin"},
                "traffic_source": {"name": "(direct)", "medium": "(none)", "source": "(direct)"},
                "platform": "WEB",
                "stream_id": "2837465123",
            }
        )
    rows[5]["event_timestamp"] = int(FUTURE.timestamp() * 1_000_000)  # rejected: future
    rows[11]["user_properties"] = [  # rejected: invalid email
        {"key": "email", "value": _ga4_value("bob@@example.com") | {"set_timestamp_micros": None}}
    ]
    rows[16]["user_properties"] = []  # rejected: anonymous visitor, no email to track against
    value = pl.Struct(
        {
            "string_value": pl.String,
            "int_value": pl.Int64,
            "float_value": pl.Float64,
            "double_value": pl.Float64,
        }
    )
    uvalue = pl.Struct({**dict(value.to_schema()), "set_timestamp_micros": pl.Int64})
    return pl.DataFrame(
        rows,
        schema={
            "event_date": pl.String,
            "event_timestamp": pl.Int64,
            "event_name": pl.String,
            "event_params": pl.List(pl.Struct({"key": pl.String, "value": value})),
            "event_previous_timestamp": pl.Int64,
            "event_bundle_sequence_id": pl.Int64,
            "user_id": pl.String,
            "user_pseudo_id": pl.String,
            "user_properties": pl.List(pl.Struct({"key": pl.String, "value": uvalue})),
            "user_first_touch_timestamp": pl.Int64,
            "device": pl.Struct(
                {"category": pl.String, "operating_system": pl.String, "language": pl.String}
            ),
            "geo": pl.Struct({"continent": pl.String, "country": pl.String, "city": pl.String}),
            "traffic_source": pl.Struct(
                {"name": pl.String, "medium": pl.String, "source": pl.String}
            ),
            "platform": pl.String,
            "stream_id": pl.String,
        },
    )


def mixpanel(rng: random.Random, people: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mixpanel raw export: one JSON object per line, everything under `properties`."""
    lines = []
    for i in range(15):
        p = people[i % len(people)]
        t = _ts(rng)
        lines.append(
            {
                "event": rng.choice(["Sign Up", "Viewed Report", "Invited Teammate"]),
                "properties": {
                    "time": int(t.timestamp()),
                    "distinct_id": p["user_id"],
                    "$insert_id": f"{rng.getrandbits(64):016x}",
                    "$email": p["email"],
                    "$os": rng.choice(["Mac OS X", "Windows", "Linux"]),
                    "$browser": rng.choice(["Chrome", "Firefox", "Safari"]),
                    "$city": "Lisbon",
                    "mp_country_code": "PT",
                    "mp_lib": "web",
                    "mp_processing_time_ms": int(t.timestamp() * 1000) + 350,
                    "plan": p["plan"],
                },
            }
        )
    lines[2]["properties"]["time"] = int(FUTURE.timestamp())  # rejected: future
    lines[6]["properties"]["$email"] = "ann@example..com"  # rejected: invalid email
    lines[10]["event"] = ""  # rejected: empty name
    return lines


def amplitude(rng: random.Random, people: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Amplitude Export API: gzipped JSON lines, naive UTC `event_time`."""
    lines = []
    for i in range(15):
        p = people[i % len(people)]
        t = _ts(rng)
        lines.append(
            {
                "$insert_id": f"{rng.getrandbits(64):016x}",
                "amplitude_id": rng.randint(10**10, 10**11),
                "app": 187523,
                "city": "Madrid",
                "country": "Spain",
                "device_id": f"{rng.getrandbits(64):016x}",
                "event_id": i + 1,
                "event_properties": {
                    "screen": rng.choice(["home", "settings", "billing"]),
                    "duration_ms": rng.randint(100, 5000),
                },
                "event_time": t.strftime("%Y-%m-%d %H:%M:%S.%f"),
                "client_event_time": t.strftime("%Y-%m-%d %H:%M:%S.%f"),
                "server_upload_time": (t + timedelta(seconds=3)).strftime("%Y-%m-%d %H:%M:%S.%f"),
                "event_type": rng.choice(["Screen Viewed", "Button Clicked", "Session Start"]),
                "language": "Spanish",
                "os_name": rng.choice(["ios", "android"]),
                "platform": rng.choice(["iOS", "Android"]),
                "region": "Madrid",
                "session_id": int(t.timestamp() * 1000),
                "user_id": p["user_id"],
                "user_properties": {"email": p["email"], "plan": p["plan"]},
                "uuid": f"{rng.getrandbits(128):032x}",
            }
        )
    lines[1]["event_time"] = "2031-05-05 10:00:00.000000"  # rejected: future
    lines[4]["event_time"] = "yesterday"  # rejected: unparseable
    lines[8]["user_properties"]["email"] = "carlos at example.com"  # rejected: invalid email
    return lines


def _contact_csv_rows(people: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    return people[:n]


def mailchimp(rng: random.Random, people: list[dict[str, Any]]) -> pl.DataFrame:
    rows = []
    for p in people[:12]:
        optin = p["signup_at"]
        rows.append(
            {
                "Email Address": p["email"],
                "First Name": p["first_name"],
                "Last Name": p["last_name"],
                "Address": "",
                "Phone Number": f"+44 20 7946 {rng.randint(1000, 9999)}",
                "Birthday": f"{rng.randint(1, 12):02d}/{rng.randint(1, 28):02d}",
                "MEMBER_RATING": str(rng.randint(1, 5)),
                "OPTIN_TIME": optin.strftime("%Y-%m-%d %H:%M:%S"),
                "OPTIN_IP": f"192.0.2.{rng.randint(1, 254)}",
                "CONFIRM_TIME": (optin + timedelta(minutes=3)).strftime("%Y-%m-%d %H:%M:%S"),
                "CONFIRM_IP": f"192.0.2.{rng.randint(1, 254)}",
                "LATITUDE": "51.5072",
                "LONGITUDE": "-0.1276",
                "GMTOFF": "0",
                "DSTOFF": "1",
                "TIMEZONE": "Europe/London",
                "CC": "GB",
                "REGION": "England",
                "LAST_CHANGED": (optin + timedelta(days=9)).strftime("%Y-%m-%d %H:%M:%S"),
                "LEID": str(rng.randint(10**8, 10**9)),
                "EUID": f"{rng.getrandbits(40):010x}",
                "NOTES": "",
                "TAGS": rng.choice(['"Customers"', '"Newsletter","VIP"', ""]),
            }
        )
    rows[4]["Email Address"] = "mary.jones@gmail"  # rejected: dotless domain
    rows[9]["Email Address"] = "mary jones@gmail.com"  # rejected: space in the address
    return pl.DataFrame(rows)


def hubspot(rng: random.Random, people: list[dict[str, Any]]) -> pl.DataFrame:
    rows = []
    for p in people[:12]:
        rows.append(
            {
                "Record ID": str(rng.randint(10**10, 10**11)),
                "First Name": p["first_name"],
                "Last Name": p["last_name"],
                "Email": p["email"],
                "Phone Number": f"+1 415 555 {rng.randint(1000, 9999)}",
                "Contact owner": rng.choice(["Sam Rivera", "Kim Lee", ""]),
                "Lifecycle Stage": rng.choice(["Subscriber", "Lead", "Customer"]),
                "Lead Status": rng.choice(["New", "Open", "Connected", ""]),
                "Company Name": rng.choice(["Acme", "Initech", "Globex"]),
                "Create Date": p["signup_at"].strftime("%Y-%m-%d %H:%M"),
                "Last Activity Date": "",
                "Marketing contact status": rng.choice(
                    ["Marketing contact", "Non-marketing contact"]
                ),
            }
        )
    rows[3]["Email"] = '"john smith"@example.com'  # rejected: quoted local part
    rows[8]["Email"] = "ops@[192.168.0.1]"  # rejected: IP-literal domain
    return pl.DataFrame(rows)


def klaviyo(rng: random.Random, people: list[dict[str, Any]]) -> pl.DataFrame:
    rows = []
    for p in people[:12]:
        rows.append(
            {
                "Email": p["email"],
                "Phone Number": f"+1 212 555 {rng.randint(1000, 9999)}",
                "First Name": p["first_name"],
                "Last Name": p["last_name"],
                "Organization": rng.choice(["Acme", "Initech", ""]),
                "Title": rng.choice(["CTO", "Engineer", "Marketing Lead", ""]),
                "City": "New York",
                "State / Region": "NY",
                "Country": "United States",
                "Zip Code": f"{rng.randint(10001, 10299):05d}",
                "Source": rng.choice(["Signup form", "API", "List import"]),
                "Email Marketing Consent": rng.choice(["SUBSCRIBED", "NEVER_SUBSCRIBED"]),
                "External ID": p["user_id"],
                "Klaviyo ID": f"01H{rng.getrandbits(60):015X}",
                "Profile Created On": p["signup_at"].strftime("%Y-%m-%d %H:%M:%S"),
            }
        )
    rows[5]["Email"] = "lucía@example"  # rejected: dotless domain
    rows[10]["Email"] = "@example.com"  # rejected: empty local part
    return pl.DataFrame(rows)


def customerio(rng: random.Random, people: list[dict[str, Any]]) -> pl.DataFrame:
    rows = []
    for p in people[:12]:
        rows.append(
            {
                "id": p["user_id"],
                "email": p["email"],
                "cio_id": f"{rng.getrandbits(40):010x}",
                "created_at": str(int(p["signup_at"].timestamp())),
                "unsubscribed": rng.choice(["false", "false", "true"]),
                "first_name": p["first_name"],
                "plan": p["plan"],
                "company": rng.choice(["Acme", "Initech", "Globex"]),
            }
        )
    rows[1]["email"] = "x" * 65 + "@example.com"  # rejected: local part over 64 characters
    rows[6]["email"] = "bad,comma@example.com"  # rejected: invalid character
    return pl.DataFrame(rows)


def main() -> None:
    rng = random.Random(SEED)
    contacts, events = contacts_and_events(rng)
    contacts.write_csv(HERE / "contacts.csv")
    events.write_parquet(HERE / "events.parquet", compression="zstd", statistics=False)

    people = _people(random.Random(SEED + 1), 40)
    out = HERE / "presets"
    out.mkdir(exist_ok=True)
    tracks_dir = out / "segment_tracks"
    tracks_dir.mkdir(exist_ok=True)
    for i, part in enumerate(segment_tracks(rng, people)):
        buf = part.write_csv()
        with gzip.GzipFile(tracks_dir / f"part_{i:04d}.csv.gz", "wb", mtime=0) as fh:
            fh.write(buf.encode("utf-8"))
    segment_identifies(rng, people).write_parquet(out / "segment_identifies.parquet")
    ga4(rng, people).write_parquet(out / "ga4_events_20250301.parquet")
    with (out / "mixpanel_export.ndjson").open("w", encoding="utf-8") as fh:
        for line in mixpanel(rng, people):
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")
    data = "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in amplitude(rng, people))
    with gzip.GzipFile(out / "amplitude_187523_2025-03-01_5#0.json.gz", "wb", mtime=0) as fh:
        fh.write(data.encode("utf-8"))
    mailchimp(rng, people).write_csv(out / "mailchimp_subscribed_members.csv")
    hubspot(rng, people).write_csv(out / "hubspot_contacts.csv")
    klaviyo(rng, people).write_csv(out / "klaviyo_profiles.csv")
    customerio(rng, people).write_csv(out / "customerio_people.csv")


if __name__ == "__main__":
    main()
