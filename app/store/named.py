"""What is saved by name in the catalog: the settings an administrator chose for the site, and named
scalings; written once over the plain-table primitives (`app.store.tables`)."""

from __future__ import annotations

import json
from typing import Any

from app.store.records import NamedScaling
from app.store.rows import dumps
from app.store.tables import SCALINGS, SETTINGS, Setting, Tables


class Named(Tables):
    # site settings ---------------------------------------------------------------------------------
    async def site_settings(self) -> dict[str, Any]:
        return {setting.name: json.loads(setting.value) for setting in await self._select(SETTINGS, {})}

    async def save_site_settings(self, values: dict[str, Any]) -> None:
        await self._insert(SETTINGS, [Setting(name, dumps(value)) for name, value in values.items()],
                           replace=True)

    # named scalings --------------------------------------------------------------------------------
    async def save_scaling(self, scaling: NamedScaling) -> None:
        """Store a new named scaling; raises Conflict when the name is taken."""
        await self._insert(SCALINGS, [scaling], taken=f"a scaling named {scaling.name!r} exists already")

    async def get_scaling(self, name: str) -> NamedScaling | None:
        return await self._one(SCALINGS, {"name": name})

    async def list_scalings(self) -> list[NamedScaling]:
        """Every named scaling, by name."""
        return await self._select(SCALINGS, {}, order=["name"])
