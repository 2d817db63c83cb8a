"""Which MongoDB server version the catalog sees (`server_version`, app/store/mongo/connection.py): read from
buildInfo's `versionArray`, or from the `version` string when a server or a proxy in front of it leaves the
array out."""

from __future__ import annotations

from typing import Any

import pytest

from app.store.mongo.connection import MIN_SERVER, server_version


@pytest.mark.parametrize(("info", "expected"), [
    ({"version": "8.0.4", "versionArray": [8, 0, 4, 0]}, (8, 0)),
    ({"versionArray": [5, 0, 31, 0]}, (5, 0)),                 # the array wins when both are there
    ({"version": "9.9.9", "versionArray": [7, 0, 2, 0]}, (7, 0)),
    ({"version": "8.0.4"}, (8, 0)),                            # no versionArray: the string is read
    ({"version": "7.0.2-rc1"}, (7, 0)),
    ({"version": "6.0.9-ent"}, (6, 0)),
    ({"version": "10.12"}, (10, 12)),
    ({"version": "4.4.29", "versionArray": "4.4.29"}, (4, 4)),  # an array that is not a list is not trusted
    ({"version": "4.4.29", "versionArray": [4]}, (4, 4)),
    ({}, None),
    ({"version": ""}, None),
    ({"version": "unknown"}, None),
    ({"version": 8}, None),
])
def test_the_server_version_is_read_from_either_field(info: dict[str, Any], expected):
    assert server_version(info) == expected


@pytest.mark.parametrize(("version", "accepted"), [
    ("4.4.29", False), ("5.0.0", True), ("7.0.2-rc1", True), ("8.0.4", True), ("10.0.0", True),
])
def test_a_version_string_alone_decides_whether_the_server_is_new_enough(version, accepted):
    found = server_version({"version": version})
    assert found is not None and (found >= MIN_SERVER) is accepted
