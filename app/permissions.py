"""The one place that decides who may do what with an image. Every route asks `may()`, and listings
ask the store only for what `visible()` allows, so paging and counts never leak what is hidden."""

from __future__ import annotations

from typing import Literal

from app.site_policy import Site
from app.store.query import And, FieldIn, Or, Query
from app.store.records import ImageRecord, JobRecord, User

Action = Literal["view", "download", "change", "delete"]
NOTHING: Query = FieldIn("id", ())


def _owns(user: User | None, owner: str) -> bool:
    # exact, as the store's owner conditions (`visible`, `list_jobs(owner=)`) compare: a looser match here
    # would let may() and the listings disagree about an owner spelled in another case
    return user is not None and bool(owner) and user.username == owner


def effective_visibility(image: ImageRecord, site: Site) -> str:
    """User data is private to its owner (and admins) when the sharing policy forbids sharing; images
    that belong to the site itself (no owner) keep the visibility an admin gave them."""
    if image.owner and site.sharing == "none":
        return "private"
    return image.visibility


def may(user: User | None, action: Action, image: ImageRecord, site: Site) -> bool:
    """May `user` (None: a guest) `action` this image: view its record, tiles and thumbnail; download the
    original; change its visibility; delete it."""
    if user is not None and user.is_admin:
        return True
    if user is not None and user.disabled:
        user = None
    if action in ("change", "delete"):
        if site.demo_mode or not _owns(user, image.owner):
            return False
        return site.sharing == "choose" if action == "change" else site.users_may_delete
    if _owns(user, image.owner):
        return True
    visibility = effective_visibility(image, site)
    if user is None:
        allowed = site.guest_access and visibility == "public"
        return allowed and (action == "view" or site.guest_download)
    if visibility in ("registered", "public"):
        return True
    return site.sharing == "all" and bool(image.owner)


def visible(user: User | None, site: Site) -> Query | None:
    """The store condition for the images `user` may view (None: no condition, everything)."""
    if user is not None and user.is_admin:
        return None
    shared_by_site = FieldIn("owner", ("",))
    if user is None or user.disabled:
        if not site.guest_access:
            return NOTHING
        public = FieldIn("visibility", ("public",))
        return And((public, shared_by_site)) if site.sharing == "none" else public
    shared = FieldIn("visibility", ("registered", "public"))
    own = FieldIn("owner", (user.username,))
    if site.sharing == "all":
        # every user's data, and what the site itself shares
        return Or((own, And((shared_by_site, shared)), FieldIn("owner", ("",), negate=True)))
    if site.sharing == "none":
        return Or((own, And((shared_by_site, shared))))
    return Or((own, shared))


def may_see_job(user: User | None, job: JobRecord) -> bool:
    """Admins see every job; users their own; guests none."""
    if user is None or user.disabled:
        return False
    return user.is_admin or _owns(user, job.owner)


def upload_refusal(user: User | None, site: Site) -> str:
    """Why `user` may not upload files now; empty when they may. Administrators always may; users when the
    site lets users upload and is not in demo mode; guests and disabled accounts never."""
    if user is None or user.disabled:
        return "log in to upload files"
    if user.is_admin:
        return ""
    if site.demo_mode:
        return "this site is in demo mode: it is read-only for everyone but administrators"
    if not site.users_may_upload:
        return "uploads are turned off on this site: ask an administrator"
    return ""
