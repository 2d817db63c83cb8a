"""The search builder's elements in the catalog (an administrator's form), written once over the plain-table
primitives (`app.store.tables`); each adapter keeps the header indexes the elements' keywords need."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

from app.store.records import SearchElement
from app.store.tables import ELEMENTS, Change, Tables

# what `update_element` replaces: everything but the id, the position and when it was made
_DEFINITION = ("type", "label", "keywords", "help", "enabled", "options")


class SearchElements(Tables):
    async def list_elements(self) -> list[SearchElement]:
        """Every search element, in form order."""
        return await self._select(ELEMENTS, {}, order=["position"])

    async def add_element(self, element: SearchElement) -> None:
        """Add at the end of the form; raises Conflict when the id is taken. Creates the indexes its
        keywords need."""
        last = await self._select(ELEMENTS, {}, order=["-position"], limit=1)
        element.position = last[0].position + 1 if last else 0
        await self._insert(ELEMENTS, [element], taken=f"there is already a search element {element.id!r}")
        await self._elements_changed()

    async def update_element(self, element: SearchElement) -> bool:
        """Replace an element's definition (not its position); False when there is none with that id.
        Indexes follow the change."""
        definition = {name: getattr(element, name) for name in _DEFINITION}
        changed = await self._update(ELEMENTS, {"id": element.id}, definition)
        if changed:
            await self._elements_changed()
        return changed == 1

    async def delete_element(self, element_id: str) -> bool:
        """False when there is none; drops indexes no other element needs."""
        deleted = await self._delete(ELEMENTS, {"id": element_id})
        if deleted:
            await self._elements_changed()
        return deleted == 1

    async def order_elements(self, element_ids: Sequence[str]) -> None:
        """Put the elements in this order (unknown ids are ignored; ids not listed keep their relative order
        after them)."""
        current = [element.id for element in await self.list_elements()]
        listed = [element_id for element_id in dict.fromkeys(element_ids) if element_id in current]
        ordered = listed + [element_id for element_id in current if element_id not in listed]
        await self._apply(ELEMENTS, [Change({"id": element_id}, {"position": position})
                                     for position, element_id in enumerate(ordered)])

    @abstractmethod
    async def _elements_changed(self) -> None:
        """Create the header indexes the elements' keywords need and drop those no element needs."""
