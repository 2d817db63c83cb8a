"""One hierarchy of errors; each message is written for the person who has to act on it, and each kind
carries the HTTP status that says why a request met it (one handler in app/routes answers with it)."""

from __future__ import annotations


class ImageXError(Exception):
    """Base of every error ImageX raises on purpose; `str(error)` is the user-facing message."""

    status = 400


class SettingError(ImageXError):
    """A setting or command-line value that cannot be used."""


class StoreError(ImageXError):
    """The catalog cannot be opened, is busy, or does not answer as expected: try again later."""

    status = 503


class DiskFull(StoreError):
    """A write the disk has no room for: the catalog's, an upload's, or a job's pyramids. Reads go on
    working."""

    status = 507


class StorageError(ImageXError):
    """The server cannot write what it must keep (an upload's file): full, read-only or failing disk."""

    status = 507


class Conflict(StoreError):
    """A record that would duplicate one already in the catalog."""

    status = 409


class TilingFailed(ImageXError):
    """What needs an image's values, asked for when a two-phase ingest catalogued the image and its
    pyramids could not be built (its file was removed or changed): the values cannot be read."""

    status = 409


class FormatError(ImageXError):
    """A file that ImageX cannot read as an image: unknown format, corrupt, truncated or hostile."""

    status = 422


class UnsupportedFormat(FormatError):
    """A file whose content is not a format ImageX reads."""


class TooLarge(ImageXError):
    """Past a size limit: the maximum file size, the quota, a declared length, or the pixels allowed."""

    status = 413
