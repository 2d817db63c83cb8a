"""One hierarchy of errors; each message is written for the person who has to act on it."""

from __future__ import annotations


class ImageXError(Exception):
    """Base of every error ImageX raises on purpose; `str(error)` is the user-facing message."""


class SettingError(ImageXError):
    """A setting or command-line value that cannot be used."""


class StoreError(ImageXError):
    """The catalog cannot be opened or does not answer as expected."""


class DiskFull(StoreError):
    """A write the disk has no room for: the catalog's, or a job's pyramids. Reads go on working."""


class NotFound(ImageXError):
    """A record that was asked for does not exist."""


class FormatError(ImageXError):
    """A file that ImageX cannot read as an image: unknown format, corrupt, truncated or hostile."""


class UnsupportedFormat(FormatError):
    """A file whose content is not a format ImageX reads."""


class Conflict(StoreError):
    """A record that would duplicate one already in the catalog."""
