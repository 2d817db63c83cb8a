"""Site settings: the administrator's control panel. They live in the store and apply at once."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from app.names import AUTO, STRETCHES

REGISTRATION = ("open", "invite", "closed")
SHARING = ("choose", "none", "all")
VISIBILITIES = ("private", "registered", "public")
DEFAULT_STRETCHES = (AUTO, *STRETCHES)
MAX_BYTES = 10**18
_EMAIL = re.compile(r"^[^@\s<>\"']+@[^@\s<>\"']+\.[^@\s<>\"']+$")
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(text: str) -> int:
    """`1073741824`, `1 GB`, `500MB`, `2 GiB` -> bytes. Negative, fractional bytes, words and sizes above
    1 EB (more than the catalog's integers hold) are refused."""
    match = re.fullmatch(r"\s*(\d{1,30}(?:\.\d{1,30})?)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"{text!r} is not a size: use a number of bytes, or a number with KB, MB, GB or TB")
    # exact decimal arithmetic: a float would round big byte counts and overflow on long digit strings
    value = Decimal(match.group(1)) * _UNITS[match.group(2).lower()]
    if value != value.to_integral_value():
        raise ValueError(f"{text!r} is not a whole number of bytes")
    if value > MAX_BYTES:
        raise ValueError(f"{text!r} is too large: at most {MAX_BYTES} bytes (1 EB)")
    return int(value)


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{text!r} is not yes or no")


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"{text!r} is not one of: {', '.join(choices)}")
        return text

    return parse


def _title(text: str) -> str:
    text = text.strip()
    if not 1 <= len(text) <= 100:
        raise ValueError("the site title must be 1-100 characters")
    return text


def clean_email(text: str) -> str:
    text = text.strip()
    if text and not _EMAIL.match(text):
        raise ValueError(f"{text!r} is not an email address")
    return text


@dataclass(frozen=True)
class SiteSetting:
    name: str
    default: Any
    label: str
    help: str
    parse: Callable[[str], Any]
    kind: str = "text"  # text | bool | choice | bytes
    choices: tuple[str, ...] = ()


SITE_SETTINGS: tuple[SiteSetting, ...] = (
    SiteSetting("site_title", "ImageX", "Site title", "Shown in every page's title and header.", _title),
    SiteSetting("admin_email", "", "Administrator contact email", "Shown to users who need help.",
                clean_email),
    SiteSetting("demo_mode", False, "Demo mode",
                "Read-only for everyone but administrators, with a banner.", _bool, "bool"),
    SiteSetting("guest_access", True, "Guests may browse",
                "Visitors who are not logged in see public images.", _bool, "bool"),
    SiteSetting("guest_search", True, "Guests may search",
                "Visitors who are not logged in may filter and search the catalog.", _bool, "bool"),
    SiteSetting("guest_download", False, "Guests may download originals",
                "Visitors who are not logged in may download the original files of public images.", _bool,
                "bool"),
    SiteSetting("registration", "closed", "Registration",
                "open: anyone may register; invite: only with an invitation link; closed: admins add users.",
                _choice(REGISTRATION), "choice", REGISTRATION),
    SiteSetting("users_may_upload", True, "Users may upload", "Registered users may upload files.", _bool,
                "bool"),
    SiteSetting("users_may_delete", True, "Users may delete their own data",
                "Owners may delete their images.", _bool, "bool"),
    SiteSetting("default_quota", 10 * 10**9, "Default quota",
                "Bytes each user may store unless their account says otherwise.", parse_bytes, "bytes"),
    SiteSetting("max_file_size", 4 * 10**9, "Maximum file size", "Largest single file a user may upload.",
                parse_bytes, "bytes"),
    SiteSetting("sharing", "choose", "Sharing policy",
                "choose: owners set each image private, registered users or public; none: only owners and "
                "admins see user data; all: every registered user sees all user data.",
                _choice(SHARING), "choice", SHARING),
    SiteSetting("user_surveys", True, "Each user's own sky survey",
                "Keep a HiPS survey of each user's own images that others may not see (their private "
                "images), shown to them on the sky page over the shared survey. Off: none is built or "
                "served.",
                _bool,
                "bool"),
    SiteSetting("keep_patient_data", False, "Keep DICOM patient data",
                "Catalog the patient, physician and institution attributes of DICOM files and their real "
                "UIDs (shown and searchable by whoever may see the image). Off: they are left out at ingest "
                "and UIDs replaced by pseudonyms. Applies to files ingested from then on.", _bool, "bool"),
    SiteSetting("default_stretch", "auto", "Default stretch for new images",
                "The stretch of the display pyramid built at ingest when a file is ingested with no stretch "
                "of its own (an upload, a watched folder, imagex ingest without --stretch): auto is linear "
                "(8-bit pictures as they are); ahisteq, adaptive histogram equalisation, brings out faint "
                "and bright structure alike with cells fixed in image pixels (an eighth of the image's "
                "longer side). It also becomes those images' default display. Applies to files ingested "
                "from then on.", _choice(DEFAULT_STRETCHES), "choice", DEFAULT_STRETCHES),
)
SITE_BY_NAME = {setting.name: setting for setting in SITE_SETTINGS}


@dataclass(frozen=True)
class Site:
    """The site settings in force (read from the store for each request)."""

    site_title: str = "ImageX"
    admin_email: str = ""
    demo_mode: bool = False
    guest_access: bool = True
    guest_search: bool = True
    guest_download: bool = False
    registration: str = "closed"
    users_may_upload: bool = True
    users_may_delete: bool = True
    default_quota: int = 10 * 10**9
    max_file_size: int = 4 * 10**9
    sharing: str = "choose"
    user_surveys: bool = True
    keep_patient_data: bool = False
    default_stretch: str = "auto"

    @classmethod
    def from_stored(cls, stored: Mapping[str, Any]) -> Site:
        """Stored values over defaults; unknown or ill-typed stored values are ignored."""
        values: dict[str, Any] = {}
        for setting in SITE_SETTINGS:
            value = stored.get(setting.name, setting.default)
            if type(value) is not type(setting.default):
                value = setting.default
            values[setting.name] = value
        return cls(**values)


def validate_form(form: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Parse a control-panel form: (values to store, errors by setting name). Checkboxes that are absent
    mean False."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for setting in SITE_SETTINGS:
        raw = form.get(setting.name)
        if raw is None:
            if setting.kind != "bool":
                continue
            raw = ""
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as error:
            errors[setting.name] = str(error)
    return values, errors
