"""The SQLite catalog's quota decision for an upload (the rest of reservations: app/store/uploads.py)."""

from __future__ import annotations

from app.store.records import QuotaCheck, UploadHolder
from app.store.sqlite.connection import SQLiteBase, transaction


class SQLiteSite(SQLiteBase):
    # upload reservations ---------------------------------------------------------------------------
    async def reserve_upload(self, reservation_id: str, owner: str, size: int, quota: int,
                             ttl: float, *, used: int | None = None,
                             holder: UploadHolder | None = None) -> QuotaCheck:
        holder = holder or UploadHolder()
        received = size if used is None else used

        def reserve() -> QuotaCheck:
            with transaction(self.db) as db:  # one writer: the sums and the insert see the same state
                # the time is read holding the lock: a reservation another process made while this one
                # waited for it is older than this one, never younger
                stamp = self.now()
                db.execute("DELETE FROM upload_reservations WHERE expires < ?", (stamp,))
                stored = db.execute(
                    "SELECT coalesce(sum(size), 0) FROM (SELECT max(max(i.size), coalesce(max(c.bytes), 0)) "
                    "AS size FROM images i LEFT JOIN upload_charges c ON c.owner = i.owner AND "
                    "c.sha256 = i.sha256 WHERE i.owner = ? GROUP BY i.sha256)", (owner,)).fetchone()[0]
                pending = db.execute(
                    "SELECT coalesce(sum(max(coalesce(json_extract(options, '$.size'), 0), "
                    "coalesce(json_extract(options, '$.charge'), 0))), 0) FROM jobs WHERE owner = ? "
                    "AND state IN ('queued', 'running') AND provenance = 'upload' "
                    # a job queued a moment ago whose upload still holds its reservation counts once
                    "AND coalesce(json_extract(options, '$.reservation'), '') NOT IN "
                    "(SELECT id FROM upload_reservations WHERE owner = ?)", (owner, owner)).fetchone()[0]
                mine = db.execute("SELECT created FROM upload_reservations WHERE id = ?",
                                  (reservation_id,)).fetchone()
                created = stamp if mine is None else mine[0]
                others_held, older_used = db.execute(
                    "SELECT coalesce(sum(bytes), 0), coalesce(sum(CASE WHEN created < ? OR (created = ? AND "
                    "id < ?) THEN used ELSE 0 END), 0) FROM upload_reservations WHERE owner = ? AND id != ?",
                    (created, created, reservation_id, owner, reservation_id)).fetchone()
                check = QuotaCheck.decide(quota=quota, stored=int(stored), pending=int(pending),
                                          others_held=int(others_held), older_used=int(older_used),
                                          size=size,
                                          used=received)
                if check.granted:
                    db.execute(
                        "INSERT INTO upload_reservations (id, owner, bytes, used, expires, host, pid, "
                        "started, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                        "bytes = excluded.bytes, used = excluded.used, expires = excluded.expires",
                        (reservation_id, owner, check.held, min(check.held, received), stamp + ttl,
                         holder.host, holder.pid, holder.started, created))
                return check

        return await self._run(reserve)
