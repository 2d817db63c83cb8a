"""Who may open which survey, and the signed links that open the non-public ones: what the sky page hands
out (app/routes/sky.py) and the survey's file route checks (app/routes/hips.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app import tokens
from app.hips.live import PUBLIC, REGISTERED, user_survey

if TYPE_CHECKING:
    from app.archive import Archive

SURVEY_GEN = "0" * tokens.GEN_CHARS  # a survey has one generation: its tokens expire, its folder stays


def survey_subject(survey: str) -> str:
    """What a survey's token is signed for (as an image id is for tile tokens)."""
    return f"hips:{survey}"


def survey_url(archive: Archive, survey: str) -> str:
    """The base URL of a survey for a page: signed (expiring) for every survey but the public one."""
    if survey == PUBLIC:
        return f"/hips/{PUBLIC}"
    token = tokens.make(archive.secret, survey_subject(survey), SURVEY_GEN, archive.settings.tile_token_ttl)
    return f"/hips/{survey}/{token}"


def surveys_for(archive: Archive, user: Any, site: Any) -> tuple[str, str]:
    """The surveys `user` (None: a guest) may see on `site`, as (base, own): the most inclusive shared survey
    (registered for a logged-in user, public for a guest when guests may browse) and the user's own survey
    to show over it; empty names when there is none (not built, or not allowed)."""
    if user is None:
        base = PUBLIC if site.guest_access else ""
        own = ""
    else:
        base = REGISTERED
        own = user_survey(user.username) if site.user_surveys else ""
    built = [name if name and archive.hips.built(name) else "" for name in (base, own)]
    return built[0], built[1]
