"""The audit chain: every audit row (and every outcome record) is linked to the one before it and
sealed with a keyed MAC, so that deleting, editing, reordering or inserting rows is detectable.

Pure: bytes in, verdicts out. No SQLite, no files, no clock (store.py and the CLI do the I/O).

Each row of a chained table stores ``chain_prev`` (the MAC of the row before it, or of the last
purged row, or ``GENESIS`` for the very first row) and ``chain_mac``::

    chain_mac = HMAC-SHA256(key, canonical JSON of [table, id, chain_prev, column values...])

The key is not in the database (AUDIT_CHAIN_KEY, or ``audit_chain_key`` in the state folder), so
someone holding only the database cannot recompute a MAC: an edited row no longer matches its MAC,
a deleted row leaves its successor pointing at a MAC that is gone, a forged row has no valid MAC.
Truncating the tail leaves a valid but shorter chain; the chain head kept outside the database
(``audit_head`` in the state folder) catches that.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

GENESIS = "0" * 64

# Column order of each chained table, as the MAC sees it (after table, id, chain_prev).
AUDIT_FIELDS: tuple[str, ...] = (
    "ts", "kind", "agent_id", "agent_name", "action", "resource", "decision", "enforced", "policy", "rule",
    "reason", "trace_id", "decision_id", "approval_id", "context", "actor",
)  # fmt: skip
RECORD_FIELDS: tuple[str, ...] = (
    "ts", "agent_id", "decision_id", "action", "resource", "status", "result", "duration_ms",
)  # fmt: skip
TABLE_FIELDS: dict[str, tuple[str, ...]] = {"audit_log": AUDIT_FIELDS, "records": RECORD_FIELDS}

_KEY_ID_LABEL = b"meshguard audit chain key id v1"


def key_id(key: bytes) -> str:
    """A public fingerprint of a chain key (16 hex digits): which key a database was chained with."""
    return hmac.new(key, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]


# The canonical content of a row: the compact JSON array [table, id, chain_prev, values...] in UTF-8.
# One encoder for every row (json.dumps with options builds a new one per call: a third of the cost).
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_keyed: dict[bytes, Any] = {}  # key -> HMAC state after the key (copying it skips the key schedule)


def row_mac(key: bytes, table: str, row_id: int, prev: str, values: Sequence[Any]) -> str:
    """The MAC sealing one row: HMAC-SHA256(key, canonical JSON of [table, id, prev, *values])."""
    base = _keyed.get(key)
    if base is None:
        base = _keyed[key] = hmac.new(key, digestmod=hashlib.sha256)
    h = base.copy()
    h.update(_encode([table, row_id, prev, *values]).encode("utf-8", "surrogatepass"))
    return str(h.hexdigest())


def tag(key: bytes, *parts: Any) -> str:
    """A MAC over chain metadata kept in the database (anchors, the legacy mark), so that it
    cannot be moved or forged without the key either."""
    msg = json.dumps(["meta", *parts], separators=(",", ":"), ensure_ascii=False)
    return hmac.digest(key, msg.encode(), "sha256").hex()


def sha256_text(text: str | None) -> str | None:
    """The SHA-256 of a text (UTF-8), hex: the digest recorded for policy texts."""
    return None if text is None else hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class ChainRow:
    """One row as stored: id, its chain fields, and its column values in TABLE_FIELDS order."""

    id: int
    prev: str | None
    mac: str | None
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Anchor:
    """Where verification starts when older rows were purged: the last purged row's id and MAC."""

    id: int
    mac: str
    at: float
    tag: str


@dataclass
class TableReport:
    """The verdict on one chained table."""

    table: str
    rows: int = 0
    first_id: int | None = None
    last_id: int | None = None
    start: str = "the first row ever written (genesis)"
    head: str = "not checked"
    problems: int = 0
    first_problem: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problems == 0

    def fail(self, row_id: int | None, what: str) -> None:
        self.problems += 1
        if self.first_problem is None:
            self.first_problem = {"table": self.table, "id": row_id, "problem": what}

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table, "ok": self.ok, "rows": self.rows, "first_id": self.first_id, "last_id": self.last_id,
            "start": self.start, "head": self.head, "problems": self.problems, "first_problem": self.first_problem,
            "notes": list(self.notes),
        }  # fmt: skip


def verify_rows(
    key: bytes,
    table: str,
    rows: Iterable[ChainRow],
    *,
    start_prev: str = GENESIS,
    start_after: int | None = None,
    start_text: str | None = None,
    report: TableReport | None = None,
    find_by_mac: Callable[[str], int | None] | None = None,
) -> TableReport:
    """Walk ``rows`` in id order and check each MAC and each link. Records the first problem (and
    counts the rest: after a break the walk goes on from the row found, so one deletion is one problem).

    ``start_prev`` is what the first row must be chained after (GENESIS, or an anchor's MAC);
    ``start_after`` the id of that predecessor when known (an anchor's), for the messages.
    ``find_by_mac`` (MAC -> id of the row holding it) lets a bad MAC be explained as a move.
    """
    rep = report or TableReport(table)
    if start_text:
        rep.start = start_text
    expected_prev = start_prev
    last_id = start_after
    for row in rows:
        rep.rows += 1
        if rep.first_id is None:
            rep.first_id = row.id
        rep.last_id = row.id
        if row.mac is None or row.prev is None:
            rep.fail(row.id, f"row {row.id} has no chain fields (written outside the gateway, or edited)")
            expected_prev, last_id = row.mac or "", row.id
            continue
        if not hmac.compare_digest(row_mac(key, table, row.id, row.prev, row.values), row.mac):
            rep.fail(row.id, _explain_bad_mac(key, table, row, find_by_mac))
        elif row.prev != expected_prev:
            rep.fail(row.id, _explain_bad_link(row, expected_prev, last_id, start_prev))
        expected_prev, last_id = row.mac, row.id
    return rep


def _explain_bad_mac(key: bytes, table: str, row: ChainRow, find_by_mac: Callable[[str], int | None] | None) -> str:
    # A row moved to another id: its MAC holds under the id it was written with, which is one
    # past the row whose MAC it was chained after.
    assert row.prev is not None and row.mac is not None
    before = find_by_mac(row.prev) if find_by_mac is not None else None
    candidates = [before + 1] if before is not None else []
    if row.prev == GENESIS:
        candidates.append(1)
    candidates += [row.id + d for d in range(-16, 17) if d and row.id + d > 0]  # its neighbour moved too
    for original in candidates:
        if original != row.id and hmac.compare_digest(row_mac(key, table, original, row.prev, row.values), row.mac):
            return (f"row {row.id} is the row written as id {original}: rows were reordered "
                    "(ids changed); its content matches its MAC only under its original id")  # fmt: skip
    return (f"row {row.id} does not match its MAC: a field was edited, or the row was forged "
            "(inserted by someone without the chain key)")  # fmt: skip


def _explain_bad_link(row: ChainRow, expected_prev: str, last_id: int | None, start_prev: str) -> str:
    if last_id is None:
        if start_prev == GENESIS:
            return (f"row {row.id} is the first row but was chained after another row: rows before it were "
                    "deleted, and no purge recorded an anchor")  # fmt: skip
        return f"row {row.id} is the first row but is not chained after the purge anchor: rows before it were deleted"
    if row.id > last_id + 1:
        missing = f"row {last_id + 1}" if row.id == last_id + 2 else f"rows {last_id + 1}-{row.id - 1}"
        return f"{missing} deleted: row {row.id} was chained after a row that is no longer there"
    return (f"row {row.id} was not chained after row {last_id}: a row was removed, moved or "
            "replaced between them")  # fmt: skip


def check_head(
    rep: TableReport, head: dict[str, Any] | None, lookup: Callable[[int], str | None], where: str,
    purged_through: int = 0,
) -> None:  # fmt: skip
    """Compare the end of the chain with the head recorded outside the database (``where``).
    ``lookup``: row id -> the MAC stored in that row (None when there is no such row);
    ``purged_through``: the anchor's id (rows up to it were deleted by retention)."""
    if head is None:
        rep.head = (f"no chain head recorded outside the database ({where}); rows deleted from the end "
                    "of the trail cannot be detected")  # fmt: skip
        rep.notes.append(rep.head)
        return
    hid, hmac_ = int(head.get("id") or 0), str(head.get("mac") or "")
    if hid == 0:
        rep.head = f"the head in {where} records no row yet"
        return
    if hid <= purged_through:
        rep.head = f"row {hid} recorded in {where} was deleted by retention since"
        return
    if rep.last_id is None or hid > rep.last_id:
        last = "no rows" if rep.last_id is None else f"the last row is {rep.last_id}"
        rep.fail(hid, f"the end of the trail was cut: the chain head in {where} is row {hid}, but {last}")
        rep.head = f"row {hid} recorded in {where} is missing"
        return
    found = lookup(hid)
    if found is None:
        rep.head = f"row {hid} recorded in {where} was purged or is before the verified range"
        return
    if not hmac.compare_digest(found, hmac_):
        rep.fail(hid, f"row {hid} is not the row the chain head in {where} recorded: the end of the trail was rewritten")
        rep.head = f"row {hid} differs from {where}"
        return
    rep.head = f"matches {where} (row {hid})" + (f"; {rep.last_id - hid} newer rows" if rep.last_id > hid else "")


def entry_values(entry: dict[str, Any]) -> tuple[int, str | None, str | None, tuple[Any, ...]]:
    """(id, prev, mac, values) of an exported audit entry (`GET /admin/audit`, `audit export`
    json/jsonl), rebuilt exactly as the gateway sealed them. Raises ValueError when it cannot be."""
    chain = entry.get("chain")
    if not isinstance(chain, dict):
        raise ValueError("it has no 'chain' field (export it again with this version)")
    context = entry.get("context")
    if isinstance(context, (dict, list)):
        context = json.dumps(context, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    values = (
        chain.get("ts"), entry.get("kind"), entry.get("agent_id"), entry.get("agent_name"), entry.get("action"),
        entry.get("resource"), entry.get("decision"), 1 if entry.get("enforced") else 0, entry.get("policy"),
        entry.get("rule"), entry.get("reason"), entry.get("trace_id"), entry.get("decision_id"),
        entry.get("approval_id"), context, entry.get("actor"),
    )  # fmt: skip
    return int(entry["id"]), chain.get("prev"), chain.get("mac"), values
