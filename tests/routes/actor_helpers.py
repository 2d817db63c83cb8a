"""What the tests of image actions share: a logged-in test client (or a guest's) that changes an image's
visibility or deletes it, and the roles of the test users."""

from __future__ import annotations

from typing import Any


class Actor:
    """A logged-in test client (or a guest's) and its CSRF token."""

    def __init__(self, client: Any, token: str) -> None:
        self.client = client
        self.token = token

    async def set_visibility(self, image_id: str, visibility: str, *, htmx: bool = False) -> Any:
        if htmx:
            return await self.client.post(f"/images/{image_id}/visibility", form={"visibility": visibility},
                                          headers={"HX-Request": "true", "X-CSRF-Token": self.token})
        return await self.client.post(f"/images/{image_id}/visibility",
                                      form={"visibility": visibility, "csrf_token": self.token})

    async def set_visibility_json(self, image_id: str, body: Any) -> Any:
        return await self.client.post(f"/api/images/{image_id}/visibility", json=body,
                                      headers={"X-CSRF-Token": self.token})

    async def delete(self, image_id: str, *, htmx: bool = False) -> Any:
        if htmx:
            return await self.client.post(f"/images/{image_id}/delete",
                                          headers={"HX-Request": "true", "X-CSRF-Token": self.token})
        return await self.client.post(f"/images/{image_id}/delete", form={"csrf_token": self.token})

    async def delete_json(self, image_id: str) -> Any:
        return await self.client.delete(f"/api/images/{image_id}", headers={"X-CSRF-Token": self.token})


ROLES = {"olive": "user", "otto": "user", "ada": "admin", "guest": ""}
