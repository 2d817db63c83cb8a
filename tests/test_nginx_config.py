"""`imagex nginx-config`: what it writes for a deployment, and precise refusals of what nginx could not
read. (tests/deploy/test_nginx.py runs the site in a real nginx.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from app.cli import main
from app.nginx import JS_NAME, SITE_NAME


def run(capsys: pytest.CaptureFixture[str], data: Path, *args: str) -> tuple[int, str, str]:
    status = main(["nginx-config", "--data", str(data), *args])
    out, err = capsys.readouterr()
    return status, out, err


def test_the_site_names_this_deployment(tmp_path, capsys):
    data = tmp_path / "var"
    status, site, _ = run(capsys, data, "--port", "8123", "--server-name", "images.example.org")
    assert status == 0
    assert "server 127.0.0.1:8123;" in site and "server_name images.example.org;" in site
    assert f"root {(data / 'tiles').resolve()};" in site
    assert f"js_import imagex_tiles from /etc/nginx/{JS_NAME};" in site
    assert "proxy_request_buffering off;" in site
    # the site's default maximum file size (4 GB) and room for a form
    assert re.search(r"client_max_body_size 4001048576;", site)
    assert "ssl" not in site
    key_json = (data / "secret.key.json").resolve()
    assert f"js_preload_object imagex_secret from {key_json};" in site
    status, module, _ = run(capsys, data, "--js")
    assert status == 0 and f"from {key_json})" in module
    # made when missing, so nginx and ImageX share one key; nginx preloads it as JSON, its owner's only
    key = (data / "secret.key").read_text().strip()
    assert json.loads(key_json.read_text()) == {"key": key}
    assert key_json.stat().st_mode & 0o777 == 0o600


def test_output_writes_both_files_and_tls_adds_a_redirect(tmp_path, capsys):
    out = tmp_path / "conf"
    status, printed, message = run(capsys, tmp_path / "var", "--output", str(out), "--listen", "443",
                                   "--ssl-certificate", "/etc/ssl/site.pem", "--ssl-certificate-key",
                                   "/etc/ssl/site.key")
    assert status == 0 and printed == "" and "reload nginx" in message
    site = (out / SITE_NAME).read_text()
    assert f"js_import imagex_tiles from {(out / JS_NAME).resolve()};" in site
    assert "listen 443 ssl http2;" in site and "ssl_certificate     /etc/ssl/site.pem;" in site
    assert "return 301 https://$host$request_uri;" in site
    assert "createHmac('sha256', key)" in (out / JS_NAME).read_text()


@pytest.mark.parametrize(("args", "message"), [
    (["--ssl-certificate", "/etc/ssl/site.pem"], "give both --ssl-certificate and --ssl-certificate-key"),
    (["--server-name", "a.example; include /etc/passwd"], "cannot be written into an nginx configuration"),
    (["--upstream", "127.0.0.1:8000 {"], "cannot be written into an nginx configuration"),
    (["--listen", "$port"], "cannot be written into an nginx configuration"),
])
def test_values_nginx_could_not_read_are_refused(tmp_path, capsys, args, message):
    status, printed, error = run(capsys, tmp_path / "var", *args)
    assert status == 2 and printed == ""
    assert message in error


def test_a_data_folder_with_a_quote_is_refused_and_nothing_is_written(tmp_path, capsys):
    out = tmp_path / "conf"
    status, _, error = run(capsys, tmp_path / "it's data", "--output", str(out))
    assert status == 2 and "it's data/tiles" in error
    assert "cannot be written into an nginx configuration" in error
    assert not out.exists()


def test_tile_answers_carry_the_security_headers_given(tmp_path):
    from app.nginx import Site, site_config

    policy = "default-src 'self'; img-src 'self' data: blob:; frame-ancestors 'none'"
    headers = (("Content-Security-Policy", policy), ("X-Frame-Options", "DENY"))
    site = site_config(Site(tiles_dir=tmp_path, key_json=tmp_path / "k", js_file=tmp_path / "j.js",
                            upstream="127.0.0.1:8000", security_headers=headers))
    assert f'add_header Content-Security-Policy "{policy}" always;' in site
    assert 'add_header X-Frame-Options "DENY" always;' in site
