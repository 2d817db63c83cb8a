"""`make run` watches the inbox of the data folder it serves: `<IMAGEX_DATA>/inbox`, `var/inbox` by default,
unless IMAGEX_WATCH_DIRS names others."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_recipe(environment: dict[str, str]) -> list[str]:
    """The commands `make run` would run (after installing), as the shell expands them."""
    env = {name: value for name, value in os.environ.items()
           if name not in ("IMAGEX_DATA", "IMAGEX_WATCH_DIRS")} | environment
    printed = subprocess.run(["make", "-n", "-o", "install", "-o", "vendor", "run"], cwd=ROOT, check=True,
                             capture_output=True, text=True, env=env).stdout
    lines = [line for line in printed.splitlines() if "inbox" in line]
    expanded = subprocess.run(["sh", "-c", "; ".join(f"echo {line}" for line in lines)], check=True,
                              capture_output=True, text=True, env=env).stdout
    return expanded.splitlines()


def test_the_inbox_follows_the_data_folder(tmp_path):
    environment = {"IMAGEX_DATA": str(tmp_path / "data")}
    mkdir, serve = run_recipe(environment)
    assert mkdir == f"mkdir -p {tmp_path}/data/inbox"
    assert f"IMAGEX_WATCH_DIRS={tmp_path}/data/inbox" in serve
    _, serve = run_recipe({**environment, "IMAGEX_WATCH_DIRS": "/srv/incoming"})
    assert "IMAGEX_WATCH_DIRS=/srv/incoming" in serve
    _, serve = run_recipe({})
    assert f"IMAGEX_WATCH_DIRS={ROOT}/var/inbox" in serve


def planned(target: str) -> list[str]:
    """The commands `make <target>` would run in a fresh clone (every prerequisite remade)."""
    return subprocess.run(["make", "-n", "-B", target], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout.splitlines()


def test_the_real_gatan_files_come_with_the_test_install_not_with_run():
    fetch = ".venv/bin/python -m tests.gatan_files"
    for target in ("install-test", "test"):
        commands = planned(target)
        assert fetch in commands, target
        assert commands.index(fetch) > commands.index(".venv/bin/python -m pip install --quiet -e '.[test]'")
    assert fetch not in planned("run")
