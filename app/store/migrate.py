"""Copy a catalog from one store to another (`imagex migrate-store --from URL --to URL`).

What is copied: images and every location recorded for their content (the target computes their typed
dates, footprint cells and keyword counts as at any insert), jobs (as they are: ids, states, attempts, the
images they made), users, API tokens, invitations, site settings, named scalings and search elements (the
target creates their indexes). Sessions, login failures, upload reservations and the fleet's entries are
short-lived and are not copied: users log in again on the new store, and running processes register there
when they start on it.

Resumable: records are copied in batches and whatever the target holds already (same id, or same name for
scalings and settings) is skipped, so running the same command again after an interruption finishes the
job. At the end every source record is looked up in the target and the counts are reported.

Everything goes through the store interface: its `scan_images`/`scan_jobs` list records in id order,
`existing_ids` says what the target holds and `put_jobs` writes jobs as they are.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from app.exceptions import Conflict, StoreError
from app.store import open_store
from app.store.base import Store
from app.store.records import ImageRecord

KINDS = ("images", "locations", "jobs", "users", "tokens", "invitations", "settings", "scalings", "elements",
         "charges")


@dataclass
class Tally:
    """One kind of record: how many the source has, how many this run copied, how many the target had
    already, how many could not be copied (with why), and how many source records the final check found
    in the target."""

    kind: str
    source: int = 0
    copied: int = 0
    present: int = 0
    refused: int = 0
    found: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.found == self.source


@dataclass
class Report:
    tallies: dict[str, Tally] = field(default_factory=lambda: {kind: Tally(kind) for kind in KINDS})

    @property
    def complete(self) -> bool:
        return all(tally.complete for tally in self.tallies.values())

    def lines(self) -> list[str]:
        rows = [f"{'':<12} {'source':>9} {'copied':>9} {'there':>9} {'refused':>9} {'in target':>10}"]
        for tally in self.tallies.values():
            mark = "ok" if tally.complete else f"MISSING {tally.source - tally.found}"
            rows.append(f"{tally.kind:<12} {tally.source:>9} {tally.copied:>9} {tally.present:>9} "
                        f"{tally.refused:>9} {tally.found:>10}  {mark}")
        for tally in self.tallies.values():
            rows.extend(f"{tally.kind}: {problem}" for problem in tally.problems[:20])
            if len(tally.problems) > 20:
                rows.append(f"{tally.kind}: ... and {len(tally.problems) - 20} more")
        return rows


Progress = Callable[[str, Tally], Awaitable[None] | None]


async def migrate_store(source_url: str, target_url: str, *, batch: int = 500,
                        progress: Progress | None = None) -> Report:
    """Copy everything from the store at `source_url` into the one at `target_url` (created if needed)."""
    if batch < 1:
        raise ValueError("the batch size must be at least 1")
    source, target = open_store(source_url), open_store(target_url)
    if source.same_place(target):
        raise StoreError("the source and the target are the same catalog")
    if not source.exists():
        raise StoreError(f"there is no catalog at {source.location()}")  # opening would make an empty one
    await source.open()
    try:
        await target.open()
        try:
            return await _Copy(source, target, batch, progress).run()
        finally:
            await target.close()
    finally:
        await source.close()


class _Copy:
    def __init__(self, source: Store, target: Store, batch: int, progress: Progress | None) -> None:
        self.source, self.target, self.batch, self.progress = source, target, batch, progress
        self.report = Report()

    async def _tell(self, kind: str) -> None:
        if self.progress is not None:
            outcome = self.progress(kind, self.report.tallies[kind])
            if outcome is not None:
                await outcome

    async def run(self) -> Report:
        # the records others point to first: users (tokens, owners), jobs (images' job_id)
        await self._users_and_tokens()
        await self._invitations()
        await self._settings()
        await self._scalings()
        await self._elements()
        await self._jobs()
        await self._images()
        await self._charges()
        return self.report

    # images and jobs, in batches ------------------------------------------------------------------
    async def _images(self) -> None:
        tally = self.report.tallies["images"]
        async for records in self._scan(self.source, "images"):
            tally.source += len(records)
            there = await self.target.existing_ids("images", [record.id for record in records])
            new = [record for record in records if record.id not in there]
            tally.present += len(records) - len(new)
            await self._add_images(new, tally)
            await self._locations(records)
            await self._tell("images")
        async for records in self._scan(self.source, "images"):
            tally.found += len(await self.target.existing_ids("images", [record.id for record in records]))

    async def _locations(self, records: list[ImageRecord]) -> None:
        """Every location of these images' content (the target recorded each image's own path as it was
        added; the rest are copied), checked in the target at once."""
        tally = self.report.tallies["locations"]
        ids = [record.id for record in records]
        by_key = {(location.image_id, location.path): location
                  for location in await self.source.image_locations(ids)}
        wanted = list(by_key)
        there = {(location.image_id, location.path) for location in await self.target.image_locations(ids)}
        new = [key for key in wanted if key not in there]
        tally.source += len(wanted)
        tally.present += len(wanted) - len(new)
        await self.target.add_locations([by_key[key] for key in new])
        found = {(location.image_id, location.path) for location in await self.target.image_locations(ids)}
        copied = sum(key in found for key in new)
        tally.copied += copied
        if copied < len(new):
            tally.refused += len(new) - copied
            tally.problems.append(f"{len(new) - copied} locations of images the target does not hold")
        tally.found += sum(key in found for key in wanted)
        await self._tell("locations")

    async def _add_images(self, records: list[ImageRecord], tally: Tally) -> None:
        if not records:
            return
        try:
            await self.target.add_images(records)
            tally.copied += len(records)
            return
        except Conflict:
            pass
        # something in the batch clashes: one file at a time, to copy everything that does not
        files: dict[str, list[ImageRecord]] = {}
        for record in records:
            files.setdefault(record.sha256, []).append(record)
        for file_records in files.values():
            try:
                await self.target.add_images(file_records)
                tally.copied += len(file_records)
            except Conflict as error:
                tally.refused += len(file_records)
                first = file_records[0]
                tally.problems.append(f"{first.path} (sha256 {first.sha256[:12]}): {error}")

    async def _jobs(self) -> None:
        tally = self.report.tallies["jobs"]
        async for jobs in self._scan(self.source, "jobs"):
            tally.source += len(jobs)
            there = await self.target.existing_ids("jobs", [job.id for job in jobs])
            new = [job for job in jobs if job.id not in there]
            tally.present += len(jobs) - len(new)
            written = await self.target.put_jobs(new) if new else 0
            tally.copied += written
            if written < len(new):
                tally.refused += len(new) - written
                tally.problems.append(f"{len(new) - written} jobs have a key the target queued already")
            await self._tell("jobs")
        async for jobs in self._scan(self.source, "jobs"):
            tally.found += len(await self.target.existing_ids("jobs", [job.id for job in jobs]))

    async def _scan(self, store: Store, kind: str) -> AsyncIterator[list[Any]]:
        """Batches of the store's images or jobs in id order."""
        after = ""
        while True:
            records: list[Any] = await (store.scan_images if kind == "images" else store.scan_jobs)(
                after, self.batch)
            if not records:
                return
            yield list(records)
            after = records[-1].id

    # the rest: small, through the interface ---------------------------------------------------------
    async def _users_and_tokens(self) -> None:
        users, tokens = self.report.tallies["users"], self.report.tallies["tokens"]
        for user in await self.source.list_users():
            users.source += 1
            existing = await self.target.get_user(user.id)
            if existing is not None:
                users.present += 1
            else:
                try:
                    await self.target.add_user(user)
                    users.copied += 1
                except Conflict:
                    users.refused += 1
                    users.problems.append(f"the username {user.username!r} belongs to another account in the "
                                          "target")
            if await self.target.get_user(user.id) is not None:
                users.found += 1
            source_tokens = await self.source.list_tokens(user.id)
            have = {token.id for token in await self.target.list_tokens(user.id)}
            for token in source_tokens:
                tokens.source += 1
                if token.id in have:
                    tokens.present += 1
                    continue
                if await self.target.get_user(user.id) is None:
                    tokens.refused += 1
                    continue
                await self.target.add_token(token)
                tokens.copied += 1
            tokens.found += len({token.id for token in await self.target.list_tokens(user.id)}
                                & {token.id for token in source_tokens})
        await self._tell("users")
        await self._tell("tokens")

    async def _invitations(self) -> None:
        tally = self.report.tallies["invitations"]
        have = {invitation.id for invitation in await self.target.list_invitations()}
        wanted = await self.source.list_invitations()
        for invitation in wanted:
            tally.source += 1
            if invitation.id in have:
                tally.present += 1
            elif await self.target.get_invitation(invitation.code_hash) is not None:
                tally.refused += 1
                tally.problems.append(f"invitation {invitation.id}: its code is another invitation's in the "
                                      "target")
            else:
                await self.target.add_invitation(invitation)
                tally.copied += 1
        have = {invitation.id for invitation in await self.target.list_invitations()}
        tally.found = sum(invitation.id in have for invitation in wanted)
        await self._tell("invitations")

    async def _settings(self) -> None:
        tally = self.report.tallies["settings"]
        values = await self.source.site_settings()
        have = await self.target.site_settings()
        new = {name: value for name, value in values.items() if name not in have}
        tally.source, tally.present, tally.copied = len(values), len(values) - len(new), len(new)
        await self.target.save_site_settings(new)
        tally.found = len(set(values) & set(await self.target.site_settings()))
        await self._tell("settings")

    async def _charges(self) -> None:
        """What compressed uploads are charged (a charge is the larger of the two where both have one)."""
        tally = self.report.tallies["charges"]
        charges = await self.source.content_charges()
        there = set(await self.target.content_charges())
        for owner, sha256, size in charges:
            tally.source += 1
            if (owner, sha256, size) in there:
                tally.present += 1
                continue
            await self.target.charge_content(owner, sha256, size)
            tally.copied += 1
        have = {(owner, sha256): size for owner, sha256, size in await self.target.content_charges()}
        tally.found = sum(have.get((owner, sha256), -1) >= size for owner, sha256, size in charges)
        await self._tell("charges")

    async def _scalings(self) -> None:
        tally = self.report.tallies["scalings"]
        for scaling in await self.source.list_scalings():
            tally.source += 1
            try:
                await self.target.save_scaling(scaling)
                tally.copied += 1
            except Conflict:
                tally.present += 1
        have = {scaling.name for scaling in await self.target.list_scalings()}
        tally.found = sum(scaling.name in have for scaling in await self.source.list_scalings())
        await self._tell("scalings")

    async def _elements(self) -> None:
        tally = self.report.tallies["elements"]
        have = {element.id for element in await self.target.list_elements()}
        wanted = await self.source.list_elements()
        for element in wanted:  # in form order: each goes at the end
            tally.source += 1
            if element.id in have:
                tally.present += 1
                continue
            await self.target.add_element(element)
            tally.copied += 1
        have = {element.id for element in await self.target.list_elements()}
        tally.found = sum(element.id in have for element in wanted)
        await self._tell("elements")
