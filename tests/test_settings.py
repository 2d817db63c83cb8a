"""Settings come from one table: defaults, IMAGEX_* variables, command-line flags, and the README."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from app.exceptions import SettingError
from app.settings import SETTINGS, Setting, Settings, markdown_table

REPO = Path(__file__).resolve().parents[1]
IMAGEX = Path(sys.executable).parent / "imagex"


def run_imagex(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("IMAGEX_")}
    return subprocess.run([str(IMAGEX), *args], env={**clean, **(env or {})}, capture_output=True, text=True,
                          timeout=120)


def test_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = Settings.load(environ={})
    assert settings.data == tmp_path / "var"
    assert settings.store_url == f"sqlite:///{tmp_path / 'var' / 'catalog.sqlite'}"
    assert settings.tiles_dir == tmp_path / "var" / "tiles"
    assert (settings.host, settings.port, settings.workers) == ("127.0.0.1", 8000, 0)
    assert settings.job_lease == 60.0
    assert settings.pool_size == (os.cpu_count() or 1)
    for setting in SETTINGS:
        if setting.name != "data":
            assert getattr(settings, setting.name) == setting.default, setting.name


def test_the_table_and_the_typed_settings_agree():
    names = [setting.name for setting in SETTINGS]
    assert len(names) == len(set(names))
    assert names == [f.name for f in fields(Settings) if f.name != "extra"]
    assert all(setting.help.strip() for setting in SETTINGS)
    assert Setting("job_lease", 1, "x").env == "IMAGEX_JOB_LEASE"
    assert Setting("job_lease", 1, "x").flag == "--job-lease"


@pytest.mark.parametrize(("env", "name", "expected"), [
    ({"IMAGEX_PORT": "9000"}, "port", 9000),
    ({"IMAGEX_PORT": "0"}, "port", 0),
    ({"IMAGEX_HOST": "0.0.0.0"}, "host", "0.0.0.0"),
    ({"IMAGEX_WORKERS": "3"}, "workers", 3),
    ({"IMAGEX_WORKERS": "0"}, "workers", 0),
    ({"IMAGEX_JOB_LEASE": "2.5"}, "job_lease", 2.5),
    ({"IMAGEX_JOB_LEASE": "30"}, "job_lease", 30.0),
    ({"IMAGEX_MAX_PIXELS": "1000000"}, "max_pixels", 1_000_000),
    ({"IMAGEX_JPEG_QUALITY": "100"}, "jpeg_quality", 100),
    ({"IMAGEX_JPEG_QUALITY": "1"}, "jpeg_quality", 1),
    ({"IMAGEX_PAGE_SIZE": "50"}, "page_size", 50),
    ({"IMAGEX_TILE_TOKEN_TTL": "600"}, "tile_token_ttl", 600),
    ({"IMAGEX_STORE": "sqlite:///tmp/x.sqlite"}, "store", "sqlite:///tmp/x.sqlite"),
    ({"IMAGEX_SAMPLES": "true"}, "samples", True),
    ({"IMAGEX_SAMPLES": "1"}, "samples", True),
    ({"IMAGEX_SAMPLES": "Yes"}, "samples", True),
    ({"IMAGEX_SAMPLES": "on"}, "samples", True),
    ({"IMAGEX_SAMPLES": "false"}, "samples", False),
    ({"IMAGEX_SAMPLES": "0"}, "samples", False),
    ({"IMAGEX_PORT": ""}, "port", 8000),  # empty means unset
    ({"IMAGEX_UNKNOWN": "1", "PORT": "1"}, "port", 8000),  # only IMAGEX_<name> counts
])
def test_environment_variables(env, name, expected):
    value = getattr(Settings.load(environ=env), name)
    assert value == expected and type(value) is type(expected)


def test_data_folder_from_the_environment_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = Settings.load(environ={"IMAGEX_DATA": "archive/data"})
    assert settings.data == tmp_path / "archive" / "data"
    home = Settings.load(environ={"IMAGEX_DATA": "~/imagex"}).data
    assert home == Path.home() / "imagex"


def test_store_url_follows_the_store_setting(tmp_path):
    settings = Settings.load(environ={"IMAGEX_DATA": str(tmp_path), "IMAGEX_STORE": "sqlite:///elsewhere.db"})
    assert settings.store_url == "sqlite:///elsewhere.db"


def test_process_environment_is_the_default_source(monkeypatch):
    monkeypatch.setenv("IMAGEX_PAGE_SIZE", "7")
    assert Settings.load().page_size == 7


@pytest.mark.parametrize(("env", "overrides", "name", "expected"), [
    ({"IMAGEX_PORT": "9000"}, {"port": "9100"}, "port", 9100),
    ({}, {"port": "9100"}, "port", 9100),
    ({"IMAGEX_PORT": "9000"}, {"port": None}, "port", 9000),  # flag not given
    ({"IMAGEX_WORKERS": "4"}, {"workers": "1"}, "workers", 1),
    ({"IMAGEX_JOB_LEASE": "10"}, {"job_lease": 2.0}, "job_lease", 2.0),
    ({"IMAGEX_SAMPLES": "1"}, {"samples": "no"}, "samples", False),
])
def test_flags_override_the_environment(env, overrides, name, expected):
    assert getattr(Settings.load(environ=env, **overrides), name) == expected


@pytest.mark.parametrize(("env", "named"), [
    ({"IMAGEX_PORT": "abc"}, "IMAGEX_PORT"),
    ({"IMAGEX_PORT": "70000"}, "IMAGEX_PORT"),
    ({"IMAGEX_PORT": "-1"}, "IMAGEX_PORT"),
    ({"IMAGEX_WORKERS": "-1"}, "IMAGEX_WORKERS"),
    ({"IMAGEX_WORKERS": "two"}, "IMAGEX_WORKERS"),
    ({"IMAGEX_JOB_LEASE": "0"}, "IMAGEX_JOB_LEASE"),
    ({"IMAGEX_JOB_LEASE": "-5"}, "IMAGEX_JOB_LEASE"),
    ({"IMAGEX_JOB_LEASE": "nan"}, "IMAGEX_JOB_LEASE"),
    ({"IMAGEX_JOB_LEASE": "soon"}, "IMAGEX_JOB_LEASE"),
    ({"IMAGEX_JPEG_QUALITY": "500"}, "IMAGEX_JPEG_QUALITY"),
    ({"IMAGEX_JPEG_QUALITY": "0"}, "IMAGEX_JPEG_QUALITY"),
    ({"IMAGEX_MAX_PIXELS": "1e9"}, "IMAGEX_MAX_PIXELS"),
    ({"IMAGEX_PAGE_SIZE": "0"}, "IMAGEX_PAGE_SIZE"),
    ({"IMAGEX_TILE_TOKEN_TTL": "-60"}, "IMAGEX_TILE_TOKEN_TTL"),
])
def test_bad_values_name_the_variable(env, named):
    with pytest.raises(SettingError) as raised:
        Settings.load(environ=env)
    assert named in str(raised.value)
    assert repr(env[named]) in str(raised.value) or env[named] in str(raised.value)


@pytest.mark.parametrize(("overrides", "named"), [
    ({"port": "abc"}, "--port"),
    ({"workers": "-1"}, "--workers"),
    ({"job_lease": "0"}, "--job-lease"),
])
def test_bad_flag_values_name_the_flag(overrides, named):
    with pytest.raises(SettingError, match=named):
        Settings.load(environ={}, **overrides)


def test_unknown_overrides_are_refused():
    with pytest.raises(SettingError, match=r"unknown setting.*colour"):
        Settings.load(environ={}, colour="blue")


def test_cli_prints_the_settings_in_force(tmp_path):
    result = run_imagex("settings", "--port", "9100", env={"IMAGEX_DATA": str(tmp_path),
                                                           "IMAGEX_WORKERS": "3", "IMAGEX_PORT": "9000"})
    assert result.returncode == 0, result.stderr
    lines = set(result.stdout.splitlines())
    expected = {"IMAGEX_PORT=9100", "IMAGEX_WORKERS=3", f"IMAGEX_DATA={tmp_path}", "IMAGEX_JOB_LEASE=60.0"}
    assert expected <= lines
    assert {line.split("=", 1)[0] for line in lines} == {setting.env for setting in SETTINGS}


def test_python_dash_m_runs_the_same_command(tmp_path):
    """`python -m app.cli` (as in a checkout without the `imagex` script) is the same command."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("IMAGEX_")}
    result = subprocess.run([sys.executable, "-m", "app.cli", "settings", "--port", "9100"],
                            env={**clean, "IMAGEX_DATA": str(tmp_path)}, capture_output=True, text=True,
                            timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr
    assert "IMAGEX_PORT=9100" in result.stdout.splitlines()


@pytest.mark.parametrize(("env", "args", "named"), [
    ({"IMAGEX_PORT": "abc"}, (), "IMAGEX_PORT"),
    ({"IMAGEX_JPEG_QUALITY": "500"}, (), "IMAGEX_JPEG_QUALITY"),
    ({}, ("--workers", "-1"), "--workers"),
])
def test_cli_refuses_bad_settings_with_a_message(tmp_path, env, args, named):
    result = run_imagex("settings", *args, env={"IMAGEX_DATA": str(tmp_path), **env})
    assert result.returncode == 2
    assert result.stderr.startswith("imagex: ") and named in result.stderr
    assert "Traceback" not in result.stderr


def test_settings_markdown_has_a_row_for_every_setting():
    result = run_imagex("settings", "--markdown")
    assert result.returncode == 0, result.stderr
    assert result.stdout == markdown_table()
    lines = result.stdout.splitlines()
    assert lines[0].startswith("| Environment variable |")
    rows = {line.split("|")[1].strip().strip("`"): line for line in lines[2:]}
    assert list(rows) == [setting.env for setting in SETTINGS]
    for setting in SETTINGS:
        assert setting.help in rows[setting.env]
        if setting.default not in ("", None):
            assert f"`{setting.default}`" in rows[setting.env]


def test_every_flag_is_in_the_command_help():
    result = run_imagex("ingest", "--help")
    assert result.returncode == 0
    for setting in SETTINGS:
        assert setting.flag in result.stdout and setting.env in result.stdout


def test_readme_documents_every_setting():
    readme = (REPO / "README.md").read_text()
    missing = [setting.env for setting in SETTINGS if setting.env not in readme]
    assert not missing, f"README.md does not document {', '.join(missing)}"
