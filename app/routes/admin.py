"""The administrator's pages: the control panel (site settings), users, invitations and the system monitor.
Every route here, the JSON twin included, is for administrators only (`require_admin`)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import Any

from quart import Blueprint, g, jsonify, render_template, request
from werkzeug.exceptions import NotFound

from app import identity as accounts
from app.archive import Archive, get_archive
from app.exceptions import Conflict
from app.formatting import human_bytes
from app.monitor import failure, monitor_facts
from app.names import STRETCH_LABELS
from app.openapi import described
from app.routes import schemas
from app.routes.views import htmx, require_admin
from app.site_policy import SITE_BY_NAME, SITE_SETTINGS, Site, parse_bytes, validate_form
from app.store.records import Invitation, Usage, User, new_id

bp = Blueprint("admin", __name__, url_prefix="/admin")
# the JSON twins of the admin pages, under /api/admin, guarded the same way
api_bp = Blueprint("admin_api", __name__, url_prefix="/api/admin")

INVITATION_DAYS = 7
MAX_INVITATION_DAYS = 365
ROLES = ("user", "admin")
CHOICE_LABELS = {
    "open": "open: anyone may register",
    "invite": "invite-only: with an invitation link",
    "closed": "closed: administrators add accounts",
    "choose": "users choose per image (private, registered users, public)",
    "none": "users cannot share (owner and administrators only)",
    "all": "all user data is visible to all registered users",
    "auto": "auto: linear (8-bit pictures as they are)",
    **{name: label for name, label in STRETCH_LABELS.items() if label != name},
}


# access ----------------------------------------------------------------------------------------------
bp.before_request(require_admin)
api_bp.before_request(require_admin)


def _admin() -> User:
    user = accounts.current_user()
    assert user is not None  # require_admin ran
    return user


async def _page(template: str, status: int = 200, **values: Any) -> tuple[str, int]:
    return await render_template(template, **values), status


# control panel ---------------------------------------------------------------------------------------
def setting_fields(site: Site, submitted: Mapping[str, str] | None = None,
                   errors: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The control panel's fields: the values in force, or what was submitted when it was refused."""
    fields: list[dict[str, Any]] = []
    for setting in SITE_SETTINGS:
        value: Any = getattr(site, setting.name)
        if submitted is not None:
            raw = submitted.get(setting.name)
            value = raw is not None if setting.kind == "bool" else (raw if raw is not None else value)
        human = ""
        if setting.kind == "bytes":
            try:
                human = human_bytes(parse_bytes(str(value)))
            except ValueError:
                human = ""
        fields.append({
            "name": setting.name, "label": setting.label, "help": setting.help, "kind": setting.kind,
            "choices": [(choice, CHOICE_LABELS.get(choice, choice)) for choice in setting.choices],
            "value": value, "human": human, "error": (errors or {}).get(setting.name, ""),
        })
    return fields


@bp.get("")
async def control_panel() -> Any:
    return await _page("admin_settings.html", section="settings",
                       fields=setting_fields(accounts.current_site()), notice="", error="")


@bp.post("")
async def save_settings() -> Any:
    """Validate the whole form; save only when every value is valid, so a refused form changes nothing.
    The response is the whole page, rendered with the new settings (title, banner and footer change)."""
    archive = get_archive()
    form = await request.form
    site = accounts.current_site()
    values, errors = validate_form(form)
    if errors:
        count = len(errors)
        return await _page("admin_settings.html", 422, section="settings",
                           fields=setting_fields(site, form, errors), notice="",
                           error=f"Nothing was saved: {count} value{'' if count == 1 else 's'} to correct.")
    changed = {name: value for name, value in values.items() if value != getattr(site, name)}
    if changed:
        await archive.store.save_site_settings(changed)
    if "sharing" in changed or "user_surveys" in changed:  # HiPS: who may see what changed for many images
        archive.hips.rebuild_later()
    # this request already loaded the old settings: render the page with the new ones
    new_site = Site.from_stored(await archive.store.site_settings())
    g.site = new_site
    labels = [setting.label for setting in SITE_SETTINGS if setting.name in changed]
    notice = f"Saved: {', '.join(labels)}. The change applies at once." if labels else "Nothing changed."
    return await _page("admin_settings.html", section="settings", fields=setting_fields(new_site),
                       notice=notice, error="")


# users -----------------------------------------------------------------------------------------------
def user_row(user: User, usage: Usage, site: Site) -> dict[str, Any]:
    """One account as the users page shows it."""
    quota = site.default_quota if user.quota is None else user.quota
    return {
        **user.public(), "is_admin": user.is_admin, "images": usage.images, "bytes": usage.bytes,
        "quota_bytes": quota, "quota_default": user.quota is None,
        "used_percent": round(100 * usage.bytes / quota, 1) if quota else None,
    }


async def user_rows(archive: Archive, site: Site) -> list[dict[str, Any]]:
    usage = await archive.store.usage()
    users = await archive.store.list_users()
    return [user_row(user, usage.get(user.username, Usage()), site) for user in users]


async def _users_page(status: int = 200, **values: Any) -> Any:
    """The users section: alone for htmx, else in its page."""
    archive, site = get_archive(), accounts.current_site()
    context: dict[str, Any] = {
        "section": "users", "rows": await user_rows(archive, site), "me": _admin().id, "focus": "",
        "message": "", "error": "", "new": {"username": "", "email": "", "role": "user"}, "created": None,
        "new_error": "", **values}
    return await _page("_admin_users.html" if htmx() else "admin_users.html", status, **context)


async def _row_response(user_id: str, status: int = 200, *, message: str = "", error: str = "") -> Any:
    """After an action on one account: its row (htmx) or the users page with the message by the row."""
    if not htmx():
        return await _users_page(status, focus=user_id, message=message, error=error)
    archive, site = get_archive(), accounts.current_site()
    user = await _target(user_id)
    usage = (await archive.store.usage()).get(user.username, Usage())
    return await _page("_admin_user_row.html", status, row=user_row(user, usage, site), focus=user_id,
                       message=message, error=error, me=_admin().id)


async def _target(user_id: str) -> User:
    user = await get_archive().store.get_user(user_id)
    if user is None:
        raise NotFound("there is no such account")
    return user


async def _enabled_admins(archive: Archive) -> list[User]:
    return [user for user in await archive.store.list_users() if user.is_admin]


async def _refusal(archive: Archive, target: User, action: str) -> str:
    """Why the acting admin may not demote or disable `target` ('' when allowed)."""
    if target.id == _admin().id:
        return f"You cannot {action} your own account: ask another administrator."
    if target.is_admin and not [user for user in await _enabled_admins(archive) if user.id != target.id]:
        return f"You cannot {action} the last enabled administrator."
    return ""


async def _kept_an_admin(archive: Archive, target: User, **undo: Any) -> bool:
    """After demoting or disabling an admin: if two admins just did this to each other at once, none would
    be left; then undo our change (a check before writing cannot see the other request's write)."""
    if await _enabled_admins(archive):
        return True
    await archive.store.update_user(target.id, **undo)
    return False


@bp.get("/users")
async def users() -> Any:
    return await _users_page()


@bp.post("/users")
async def add_user() -> Any:
    """Create an account with a generated password, shown once to hand over."""
    archive = get_archive()
    form = await request.form
    new = {"username": form.get("username", "").strip(), "email": form.get("email", "").strip(),
           "role": form.get("role", "user")}
    error = ""
    if new["role"] not in ROLES:
        error = f"The role must be one of: {', '.join(ROLES)}."
    else:
        try:
            SITE_BY_NAME["admin_email"].parse(new["email"])
        except ValueError as refused:
            error = _sentence(refused)
    if error:
        return await _users_page(422, new=new, new_error=error)
    password = accounts.generated_password()
    try:
        await accounts.new_user(archive, new["username"], password, role=new["role"], email=new["email"])
    except (ValueError, Conflict) as refused:
        return await _users_page(422, new=new, new_error=_sentence(refused))
    return await _users_page(201, created={"username": new["username"], "password": password})


@bp.post("/users/<user_id>/role")
async def change_role(user_id: str) -> Any:
    archive = get_archive()
    target = await _target(user_id)
    role = (await request.form).get("role", "")
    if role not in ROLES:
        return await _row_response(user_id, 422, error=f"The role must be one of: {', '.join(ROLES)}.")
    if role == target.role:
        return await _row_response(user_id, message=f"{target.username} is already {_role_name(role)}.")
    if role == "user":
        refusal = await _refusal(archive, target, "demote")
        if refusal:
            return await _row_response(user_id, 409, error=refusal)
    await archive.store.update_user(target.id, role=role)
    if role == "user" and not await _kept_an_admin(archive, target, role="admin"):
        return await _row_response(user_id, 409, error="You cannot demote the last enabled administrator.")
    return await _row_response(user_id, message=f"{target.username} is now {_role_name(role)}.")


def _sentence(error: Exception) -> str:
    text = str(error)
    return f"{text[:1].upper()}{text[1:]}."


def _role_name(role: str) -> str:
    return "an administrator" if role == "admin" else "a user"


@bp.post("/users/<user_id>/quota")
async def set_quota(user_id: str) -> Any:
    """A quota in bytes or with a unit ("10 GB"); empty means the site's default quota."""
    archive = get_archive()
    target = await _target(user_id)
    text = (await request.form).get("quota", "").strip()
    quota: int | None = None
    if text:
        try:
            quota = parse_bytes(text)
        except ValueError as error:
            return await _row_response(user_id, 422, error=f"Quota not changed: {error}.")
    await archive.store.update_user(target.id, quota=quota)
    if quota is None:
        default = human_bytes(accounts.current_site().default_quota)
        return await _row_response(user_id, message=f"Quota follows the site default ({default}).")
    return await _row_response(user_id, message=f"Quota set to {human_bytes(quota)}.")


@bp.post("/users/<user_id>/disable")
async def disable_user(user_id: str) -> Any:
    """Disable an account: its sessions end at once and its API tokens are refused."""
    archive = get_archive()
    target = await _target(user_id)
    refusal = await _refusal(archive, target, "disable")
    if refusal:
        return await _row_response(user_id, 409, error=refusal)
    await archive.store.update_user(target.id, disabled=True)
    if not await _kept_an_admin(archive, target, disabled=False):
        return await _row_response(user_id, 409, error="You cannot disable the last enabled administrator.")
    await archive.store.delete_user_sessions(target.id)
    # tile links the account was given (to its private images too) stop working now
    await archive.revoke_owner_tiles(target.username)
    archive.hips.owner_changed(target.username)  # HiPS: their images leave the surveys
    return await _row_response(user_id, message=f"{target.username} is disabled and logged out everywhere.")


@bp.post("/users/<user_id>/enable")
async def enable_user(user_id: str) -> Any:
    archive = get_archive()
    target = await _target(user_id)
    await archive.store.update_user(target.id, disabled=False)
    archive.hips.owner_changed(target.username)  # HiPS: their images go back into the surveys
    return await _row_response(user_id, message=f"{target.username} may log in again.")


# invitations -----------------------------------------------------------------------------------------
def invitation_row(invitation: Invitation, stamp: float) -> dict[str, Any]:
    state = "used" if invitation.used_by else ("expired" if invitation.expires <= stamp else "unused")
    return {"id": invitation.id, "created": invitation.created, "created_by": invitation.created_by,
            "expires": invitation.expires, "used_by": invitation.used_by, "used_at": invitation.used_at,
            "state": state}


async def _invitations_page(status: int = 200, **values: Any) -> Any:
    archive = get_archive()
    stamp = time.time()
    context: dict[str, Any] = {
        "section": "invitations", "days": INVITATION_DAYS, "max_days": MAX_INVITATION_DAYS, "error": "",
        "created": None,
        "invitations": [invitation_row(item, stamp) for item in await archive.store.list_invitations()],
        **values}
    return await _page("_admin_invitations.html" if htmx() else "admin_invitations.html", status, **context)


@bp.get("/invitations")
async def invitations() -> Any:
    return await _invitations_page()


@bp.post("/invitations")
async def create_invitation() -> Any:
    """A single-use registration link. Only the code's digest is stored, so the link is shown once."""
    archive = get_archive()
    text = (await request.form).get("days", "").strip() or str(INVITATION_DAYS)
    try:
        days = int(text)
    except ValueError:
        days = 0
    if not 1 <= days <= MAX_INVITATION_DAYS:
        return await _invitations_page(422, days=text[:20],
                                       error=f"The expiry must be 1 to {MAX_INVITATION_DAYS} days.")
    code = secrets.token_urlsafe(24)
    invitation = Invitation(id=new_id(), code_hash=accounts.digest(code), created_by=_admin().username,
                            expires=time.time() + days * 86400)
    await archive.store.add_invitation(invitation)
    link = f"{request.host_url.rstrip('/')}/register?invite={code}"
    return await _invitations_page(201, created={"link": link, "expires": invitation.expires}, days=days)


@bp.post("/invitations/<invitation_id>/revoke")
async def revoke_invitation(invitation_id: str) -> Any:
    """Withdraw an unused invitation: its link stops working at once."""
    if not await get_archive().store.expire_invitation(invitation_id):
        return await _invitations_page(409, error="That invitation was already used or had expired.")
    return await _invitations_page()


# system monitor --------------------------------------------------------------------------------------
@bp.get("/monitor")
async def monitor() -> Any:
    """The monitor page; its body polls this URL with htmx and gets the fragment."""
    facts = await monitor_facts(get_archive())
    return await _page("_admin_monitor.html" if htmx() else "admin_monitor.html", section="monitor",
                       m=facts, notice="", notice_error="", focus="", message="", error="")


@api_bp.get("/monitor")
@described("The system monitor: disk, background tasks and the ingest queue", access="admin", tag="admin",
           answers={200: ("the monitor's facts", schemas.MONITOR)})
async def monitor_api() -> Any:
    """`GET /api/admin/monitor`: the monitor's dict as JSON."""
    return jsonify(await monitor_facts(get_archive()))


@bp.post("/jobs/<job_id>/retry")
async def retry_job(job_id: str) -> Any:
    """Queue a failed job again; htmx swaps its row in the failures table."""
    archive = get_archive()
    jobs = await archive.store.get_jobs([job_id])
    if not jobs:
        raise NotFound("there is no such job")
    queued = await archive.store.requeue_job(job_id)
    [job] = await archive.store.get_jobs([job_id])
    status, message, error = 200, f"{failure(job)['name']} is queued again.", ""
    if not queued:
        status, message, error = 409, "", f"This job is {job.state}, not failed: nothing to retry."
    if htmx():
        return await _page("_admin_job_row.html", status, job=failure(job), focus=job.id, message=message,
                           error=error)
    facts = await monitor_facts(archive)
    return await _page("admin_monitor.html", status, section="monitor", m=facts, notice=message,
                       notice_error=error, focus="", message="", error="")
