"""Upload reservations and charges in the catalog, written once over the plain-table primitives
(`app.store.tables`); each adapter sums what an owner's images take (`usage`) in its own way."""

from __future__ import annotations

from abc import abstractmethod

from app.store.records import QuotaCheck, Reservation, UploadHolder, Usage
from app.store.tables import (
    CHARGES,
    JOBS,
    RESERVATIONS,
    Charge,
    Held,
    Tables,
    at_least,
    below,
    one_of,
)


class Uploads(Tables):
    @abstractmethod
    async def usage(self, owner: str | None = None) -> dict[str, Usage]:
        """Images and bytes per owner (of `owner` alone, when named): each content counted once, as the
        larger of its file's size and what its upload was charged (`charge_content`)."""

    async def reserve_upload(self, reservation_id: str, owner: str, size: int, quota: int,
                             ttl: float, *, used: int | None = None,
                             holder: UploadHolder | None = None) -> QuotaCheck:
        """Atomically (across processes: under the owner's lock) hold bytes for one upload of `owner`
        that has received `used` bytes (default: `size`) and asks for `size`, replacing what this
        reservation held before, as `QuotaCheck.decide` rules over the owner's catalogued bytes, their
        queued and running upload jobs (options `size`, or `charge` when larger) and their other unexpired
        reservations; the hold expires after `ttl` seconds unless reserved again. `holder` is the process
        streaming the upload."""
        holder = holder or UploadHolder()
        received = size if used is None else used
        async with self._locked(f"upload:{owner}"):
            # the time is read holding the lock: a reservation another process made while this one waited
            # for it is older than this one, never younger
            stamp = self.now()
            await self._delete(RESERVATIONS, {"expires": below(stamp)})
            held = await self._select(RESERVATIONS, {"owner": owner})
            stored = (await self.usage(owner)).get(owner, Usage()).bytes
            waiting = await self._pluck(JOBS, ["options"], {
                "owner": owner, "state": one_of(["queued", "running"]), "provenance": "upload"})
            # a job queued a moment ago whose upload still holds its reservation counts once
            live = {other.id for other in held}
            pending = sum(max(options.get("size") or 0, options.get("charge") or 0)
                          for (options,) in waiting if options.get("reservation") not in live)
            mine = next((other.created for other in held if other.id == reservation_id), stamp)
            others = [other for other in held if other.id != reservation_id]
            check = QuotaCheck.decide(
                quota=quota, stored=stored, pending=pending, others_held=sum(other.bytes for other in others),
                older_used=sum(other.bytes if other.used is None else other.used for other in others
                               if (other.created, other.id) < (mine, reservation_id)),
                size=size, used=received)
            if check.granted:
                await self._insert(RESERVATIONS, [Held(
                    reservation_id, owner, check.held, stamp + ttl, min(check.held, received), holder.host,
                    holder.pid, holder.started, mine)], replace=True)
            return check

    async def release_upload(self, reservation_id: str) -> None:
        await self._delete(RESERVATIONS, {"id": reservation_id})

    async def upload_reservations(self, owner: str | None = None) -> list[Reservation]:
        """The unexpired reservations (of `owner`, or of everyone), oldest expiry first."""
        where = {"expires": at_least(self.now()), **({} if owner is None else {"owner": owner})}
        return [Reservation(held.id, held.owner, held.bytes, held.bytes if held.used is None else held.used,
                            held.expires, UploadHolder(held.host, held.pid, held.started), held.created)
                for held in await self._select(RESERVATIONS, where, order=["expires"])]

    async def charge_content(self, owner: str, sha256: str, size: int) -> None:
        """Count content `sha256` as at least `size` bytes in `owner`'s quota (what a compressed upload
        unfolds into) for as long as they hold an image of it; the larger of two charges stands."""
        if not await self._insert(CHARGES, [Charge(owner, sha256, size)], skip_taken=True):
            smaller = {"owner": owner, "sha256": sha256, "bytes": below(size)}
            await self._update(CHARGES, smaller, {"bytes": size})

    async def content_charges(self) -> list[tuple[str, str, int]]:
        """Every charge as (owner, sha256, bytes), for `imagex migrate-store`."""
        return [(charge.owner, charge.sha256, charge.bytes)
                for charge in await self._select(CHARGES, {}, order=["owner", "sha256"])]
