"""Upload reservations and charges in the catalog. The quota decision itself (`reserve_upload`: one sum over
an owner's images, jobs and reservations, atomic across processes) each adapter answers in its own way; the
rest is written once over the plain-table primitives (`app.store.tables`)."""

from __future__ import annotations

from abc import abstractmethod

from app.store.records import QuotaCheck, Reservation, UploadHolder
from app.store.tables import CHARGES, RESERVATIONS, Charge, Tables, at_least, below


class Uploads(Tables):
    @abstractmethod
    async def reserve_upload(self, reservation_id: str, owner: str, size: int, quota: int,
                             ttl: float, *, used: int | None = None,
                             holder: UploadHolder | None = None) -> QuotaCheck:
        """Atomically (across processes) hold bytes for one upload of `owner` that has received `used`
        bytes (default: `size`) and asks for `size`, replacing what this reservation held before, as
        `QuotaCheck.decide` rules over the owner's catalogued bytes, their queued and running upload jobs
        (options `size`) and their other unexpired reservations; the hold expires after `ttl` seconds
        unless reserved again. `holder` is the process streaming the upload."""

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
