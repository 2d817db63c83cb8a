"""The folder watcher's settings: read from the environment, and bad values refused with a message naming
the variable."""

from __future__ import annotations

import os

import pytest

from app.exceptions import SettingError
from app.settings import Settings


def test_watch_settings_are_read_from_the_environment(tmp_path):
    environ = {"IMAGEX_WATCH_DIRS": f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}{os.pathsep}",
               "IMAGEX_WATCH_SETTLE": "0.25", "IMAGEX_WATCH_VISIBILITY": "public",
               "IMAGEX_WATCH_OWNERS": f"{tmp_path / 'a'}=alice{os.pathsep}{tmp_path / 'x=y'}=bob"}
    settings = Settings.load(environ=environ)
    assert settings.watch_folders == (tmp_path / "a", tmp_path / "b")
    assert settings.watch_settle == 0.25 and settings.watch_visibility == "public"
    assert settings.watch_owner_map == {tmp_path / "a": "alice", tmp_path / "x=y": "bob"}
    defaults = Settings.load(environ={})
    assert (defaults.watch_folders, defaults.watch_settle, defaults.watch_owner_map,
            defaults.watch_visibility) == ((), 5.0, {}, "private")


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("IMAGEX_WATCH_SETTLE", "0", "IMAGEX_WATCH_SETTLE: must be a positive number, got '0'"),
    ("IMAGEX_WATCH_SETTLE", "soon", "IMAGEX_WATCH_SETTLE: could not convert string to float: 'soon'"),
    ("IMAGEX_WATCH_VISIBILITY", "everyone",
     "IMAGEX_WATCH_VISIBILITY: must be one of private, registered, public, got 'everyone'"),
    ("IMAGEX_WATCH_OWNERS", "/data/alice", "IMAGEX_WATCH_OWNERS: each entry must be FOLDER=USERNAME, got "
                                           "'/data/alice'"),
    ("IMAGEX_WATCH_OWNERS", "/data/alice=", "IMAGEX_WATCH_OWNERS: each entry must be FOLDER=USERNAME, got "
                                            "'/data/alice='"),
    ("IMAGEX_WATCH_OWNERS", "=alice",
     "IMAGEX_WATCH_OWNERS: each entry must be FOLDER=USERNAME, got '=alice'"),
])
def test_bad_watch_settings_are_refused_with_a_message(variable, value, message):
    with pytest.raises(SettingError) as raised:
        Settings.load(environ={variable: value})
    assert str(raised.value) == message
