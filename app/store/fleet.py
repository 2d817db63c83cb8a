"""The fleet in the catalog: every running ImageX process registers and beats (`app/fleet.py` decides who
is lost); written once over the plain-table primitives (`app.store.tables`)."""

from __future__ import annotations

from app.store.records import ProcessRecord
from app.store.tables import PROCESSES, Tables, below


class Fleet(Tables):
    async def beat(self, process: ProcessRecord) -> None:
        """Register a process or replace its record (a heartbeat: `last_seen` and the rest as given)."""
        await self._insert(PROCESSES, [process], replace=True)

    async def list_processes(self) -> list[ProcessRecord]:
        """Every registered process, lost ones too, by role and start time."""
        return await self._select(PROCESSES, {}, order=["role", "started"])

    async def remove_process(self, process_id: str) -> bool:
        """Remove a process's entry (it stopped cleanly); False when there was none."""
        return await self._delete(PROCESSES, {"id": process_id}) == 1

    async def forget_processes(self, before: float) -> int:
        """Remove the entries of processes last seen before `before` (lost long ago); returns how many."""
        return await self._delete(PROCESSES, {"last_seen": below(before)})
