"""Records to SQLite rows and MongoDB documents and back, as the adapters store them (a real SQLite table
and real BSON; no server)."""

from __future__ import annotations

import sqlite3

import pytest

from app.store import rows
from app.store.records import (
    ApiToken,
    ImageRecord,
    Invitation,
    JobRecord,
    NamedScaling,
    ProcessRecord,
    SearchElement,
    User,
)

RECORDS = [
    ImageRecord(id="i1", sha256="s", hdu=1, path="/d/é.fits", name="é.fits", size=5, owner="u",
                provenance="upload", format="fits", width=3, height=4, bitpix=None,
                header={"OBJECT": "M31 ★", "EXPTIME": 2.5, "FLAG": True, "COMMENT": ["a", "b"], "X": None},
                comments={"OBJECT": "name"}, sky=None, display={"levels": 3}, note="n", created=1.5,
                job_id="j", visibility="public"),
    JobRecord(id="j1", key="k", path="/d/a.fits", owner="", provenance="watch", state="failed",
              options={"scaling": "zscale"}, worker="w", lease_until=2.0, attempts=3, error="e", note="n",
              image_ids=["i1", "i2"], created=1.0, updated=2.0),
    NamedScaling(name="deep", interval="zscale", stretch="asinh", low=-1.5, high=3e4, curve=[0.0, 0.5, 1.0],
                 source="a.fits", created=3.0, created_by="ann"),
    SearchElement(id="e1", type="number", label="Exposure", keywords=["EXPTIME", "EXPOSURE"], help="s",
                  enabled=False, position=4, options={"unit": "s"}, created=5.0),
    User(id="u1", username="Ann", role="admin", password_hash="$argon2id$x", email="a@b", display_name="A",
         quota=None, disabled=True, created=6.0, last_login=None),
    ApiToken(id="t1", user_id="u1", name="laptop", token_hash="h", created=7.0, last_used=8.0),
    Invitation(id="v1", code_hash="c", created_by="u1", expires=9.0, created=8.0, used_by=None, used_at=None),
    ProcessRecord(id="p1", role="worker", host="h", pid=12, version="1", started=1.0, last_seen=2.0,
                  lease=30.0, pool_size=2, jobs=[{"id": "j1", "path": "/d/a.fits"}], done=4, failed=1),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda record: type(record).__name__)
def test_every_record_survives_a_sqlite_row(record):
    cls = type(record)
    db = sqlite3.connect(":memory:")
    db.row_factory = sqlite3.Row
    fields = rows.names(cls)
    db.execute(f"CREATE TABLE t ({', '.join(fields)})")
    db.execute(rows.insert_sql("t", fields), rows.to_row(record))
    stored = db.execute("SELECT * FROM t").fetchone()
    back = rows.from_row(cls, stored)
    assert back == record
    # structured fields are JSON text, booleans 0/1: what the migrations' columns hold
    for name, kind in rows.columns(cls):
        if kind == "json" and getattr(record, name) is not None:
            assert isinstance(stored[name], str)
        if kind == "bool":
            assert stored[name] in (0, 1)


@pytest.mark.parametrize("record", RECORDS, ids=lambda record: type(record).__name__)
def test_every_record_survives_a_bson_document(record):
    import bson

    cls = type(record)
    key = "name" if cls is NamedScaling else "id"
    document = rows.to_doc(record, key=key)
    assert document["_id"] == getattr(record, key) and key not in document
    back = rows.from_doc(cls, bson.decode(bson.encode(document)), key=key)
    assert back == record


def test_fields_a_document_lacks_take_their_defaults():
    back = rows.from_doc(JobRecord, {"_id": "j", "key": "k", "path": "/p", "owner": "", "provenance": "batch",
                                     "state": "queued"})
    assert (back.attempts, back.image_ids, back.options, back.error) == (0, [], {}, "")


def test_json_is_compact_keeps_unicode_and_refuses_nan():
    assert rows.dumps({"a": "é", "b": [1, 2]}) == '{"a":"é","b":[1,2]}'
    with pytest.raises(ValueError, match="JSON compliant"):
        rows.dumps(float("nan"))
