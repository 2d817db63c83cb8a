"""`imagex nginx-config`: an nginx site in front of ImageX that checks the signed tile tokens itself (its
JavaScript module, njs) and serves tile files straight from the tiles folder with sendfile; a display tile
not rendered yet, a pixel value, a bad or revoked token, and every other request go to ImageX.

The token check is the one of app/tokens.py: `<expires hex>.<gen>.<digest>`, digest the first 20 hex
characters of HMAC-SHA256(secret, "tile:<id>:<gen>:<expires>"); the file is
`<tiles>/<id[:2]>/<id>/<gen>/<name>` (app/tiles/pyramid.py). nginx preloads the secret key from
`<data>/secret.key.json` (its master process, before it drops privileges, at start and reload); ImageX keeps
that copy equal to `secret.key`. Reload nginx after ImageX made a new key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.exceptions import SettingError
from app.settings import Settings
from app.tiles.server import CACHED_NAME, SECURITY_HEADERS, STATIC_NAME
from app.tokens import DIGEST_CHARS, GEN_CHARS

JS_NAME = "imagex_tiles.js"
SITE_NAME = "imagex.conf"
# What ImageX's own checks need on top of the largest file: a multipart form's boundaries and fields.
BODY_MARGIN = 1 << 20
# the file name try_files looks for when a tile URL is not good: never there, so ImageX answers
_NOWHERE = "/.imagex-no-such-tile"

JS_MODULE = r"""// ImageX tile tokens checked by nginx: written by `imagex nginx-config`; see app/nginx.py and
// app/tokens.py in ImageX. Returns the tile's path below the tiles folder for a good token, else a path
// that is never there (so the request goes to ImageX, which says what is wrong).
import crypto from 'crypto';

// /tiles/<id>/<expires>.<gen>.<digest>/<name>: one expression, compiled once
const URI = /^\/tiles\/([A-Za-z0-9]{6,32})\/@TOKEN@\/(@NAME@)$/;
const NOWHERE = '@NOWHERE@';

// The secret key: nginx preloads it when it starts (js_preload_object imagex_secret, from @KEY_JSON@), one
// copy every request shares. (Reading the key file here would put the file module into each request's
// copy of this module: a third fewer tiles per second.)
if (typeof imagex_secret !== 'object' || !/^(?:[0-9a-f]{2}){16,}$/.test(imagex_secret.key)) {
    throw new Error('@KEY_JSON@: the secret key is missing or damaged (imagex nginx-config writes it)');
}

function same(a, b) {
    // constant time: how many leading characters match must not show in the answer's timing
    let difference = a.length ^ b.length;
    for (let i = 0; i < a.length && i < b.length; i++) {
        difference |= a.charCodeAt(i) ^ b.charCodeAt(i);
    }
    return difference === 0;
}

function path(r) {
    const parts = URI.exec(r.uri);
    if (!parts) {
        return NOWHERE;
    }
    const expires = parseInt(parts[2], 16);
    const remaining = expires - Math.floor(Date.now() / 1000);
    if (!(remaining > 0)) {
        return NOWHERE;
    }
    const message = 'tile:' + parts[1] + ':' + parts[3] + ':' + expires;
    const key = Buffer.from(imagex_secret.key, 'hex');
    const digest = crypto.createHmac('sha256', key).update(message).digest('hex').slice(0, @DIGEST_CHARS@);
    if (!same(digest, parts[4])) {
        return NOWHERE;
    }
    r.variables.imagex_tile_cache = 'public, max-age=' + remaining + ', immutable';
    return '/' + parts[1].slice(0, 2) + '/' + parts[1] + '/' + parts[3] + '/' + parts[5];
}

export default { path };
"""


@dataclass(frozen=True)
class Site:
    """What the generated site needs to know."""

    tiles_dir: Path
    key_json: Path  # the secret key as nginx preloads it (app/tokens.py: share_with_nginx)
    js_file: Path
    upstream: str
    listen: str = "80"
    server_name: str = "_"
    max_body: int = 0  # bytes; 0: no limit in nginx
    certificate: str = ""
    certificate_key: str = ""
    security_headers: tuple[tuple[str, str], ...] = SECURITY_HEADERS  # as ImageX's tile answers carry


def js_module(key_json: Path) -> str:
    """The njs module that checks tile tokens with the secret nginx preloads from `key_json`."""
    if any(char in str(key_json) for char in "'\\\n"):
        raise SettingError(f"{key_json}: a path named in nginx's JavaScript may not hold quotes, "
                           "backslashes or line breaks")
    # the token as app/tokens.py spells it, in three groups
    token = rf"([1-9a-f][0-9a-f]{{0,15}})\.([0-9a-f]{{{GEN_CHARS}}})\.([0-9a-f]{{{DIGEST_CHARS}}})"
    # the names ImageX's tile layer serves from disk, without groups (the expression counts on five)
    name = f"{STATIC_NAME.pattern}|{CACHED_NAME.pattern}".replace("/", "\\/")
    return (JS_MODULE.replace("@KEY_JSON@", str(key_json))
            .replace("@DIGEST_CHARS@", str(DIGEST_CHARS)).replace("@NAME@", name).replace("@TOKEN@", token)
            .replace("@NOWHERE@", _NOWHERE))


def _quoted(value: str) -> str:
    """A value as one nginx configuration token."""
    if any(char in value for char in "\"'\\\n;{}$") or not value:
        raise SettingError(f"{value!r} cannot be written into an nginx configuration: no quotes, "
                           "backslashes, semicolons, braces or dollar signs")
    return f'"{value}"' if any(char.isspace() for char in value) else value


def _quoted_value(value: str) -> str:
    """A header value as one quoted nginx token (it may hold spaces and single quotes, as a CSP does)."""
    if any(char in value for char in '"\\\n$') or not value:
        raise SettingError(f"{value!r} cannot be written as an nginx header value")
    return f'"{value}"'


def site_config(site: Site) -> str:
    """The nginx site (for the `http` context: Debian's sites-enabled/ or conf.d/)."""
    tiles, js, key = _quoted(str(site.tiles_dir)), _quoted(str(site.js_file)), _quoted(str(site.key_json))
    upstream, server_name = _quoted(site.upstream), _quoted(site.server_name)
    tls = bool(site.certificate)
    listen = f"{_quoted(site.listen)} ssl http2" if tls else _quoted(site.listen)
    body = "0" if site.max_body <= 0 else f"{site.max_body + BODY_MARGIN}"
    body_comment = ("no limit here: ImageX refuses what exceeds the size or quota (413)" if site.max_body <= 0
                    else "the site's maximum file size and room for a form (write the site again when it is "
                    "raised); ImageX checks the exact size and quota itself")
    proxy = """        proxy_pass http://imagex_upstream;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Forwarded-Host $host;
        proxy_read_timeout 300s;         # long uploads and big originals
        proxy_send_timeout 300s;"""
    certificates = (f"""
    ssl_certificate     {_quoted(site.certificate)};
    ssl_certificate_key {_quoted(site.certificate_key)};""" if tls else "")
    redirect = (f"""
server {{
    listen 80;
    server_name {server_name};
    return 301 https://$host$request_uri;
}}
""" if tls else "")
    security = "\n".join(f"        add_header {_quoted(name)} {_quoted_value(value)} always;"
                         for name, value in site.security_headers)
    return f"""# ImageX behind nginx: written by `imagex nginx-config` for the tiles folder {site.tiles_dir}.
# nginx checks the signed tile tokens itself (its JavaScript module, njs: Debian's libnginx-mod-http-js,
# loaded by /etc/nginx/modules-enabled/) and serves tile files from disk; everything else, and tile
# requests it cannot answer (a display tile not rendered yet, a pixel value, a bad or revoked token), go
# to ImageX. Set IMAGEX_PROXY_HOPS=1 for ImageX. nginx reads the secret key when it starts: reload it
# after ImageX made a new key
# (it rewrites {site.key_json} at its start).

js_preload_object imagex_secret from {key};
js_import imagex_tiles from {js};
js_set $imagex_tile imagex_tiles.path;
js_var $imagex_tile_cache;

upstream imagex_upstream {{
    server {upstream};
    keepalive 32;
}}

server {{
    listen {listen};
    server_name {server_name};{certificates}

    client_max_body_size {body};  # {body_comment}
    proxy_request_buffering off;     # uploads pass through as they arrive: ImageX streams them to disk

    location / {{
{proxy}
    }}

    # Tiles: a good token and a file on disk are answered here with sendfile, with ImageX's headers
    # (Cache-Control for as long as the token is valid; ETag "<mtime hex>-<size hex>" as ImageX spells it).
    location /tiles/ {{
        root {tiles};
        try_files $imagex_tile @imagex;
        sendfile on;
        tcp_nopush on;
        etag on;
        types {{
            application/xml dzi;
            image/jpeg jpeg;
        }}
        default_type application/octet-stream;
        add_header Cache-Control $imagex_tile_cache;
{security}
    }}

    location @imagex {{
{proxy}
    }}
}}
{redirect}"""


async def write_site(settings: Settings, *, output: Path | None, js_path: Path, listen: str, server_name: str,
                     upstream: str | None, certificate: str, certificate_key: str) -> tuple[str, str]:
    """The site and the njs module for this deployment: the tiles folder and secret key of `settings`,
    the request size limit from the site's maximum file size (read from the catalog). With `output`, both
    are written there (the site then imports the module from there)."""
    from app import tokens
    from app.site_policy import Site as SiteSettings
    from app.sky import coverage  # noqa: F401  (the catalog's footprint functions, for its backfill)
    from app.store import open_store

    key_file = (settings.data / "secret.key").resolve()
    # made now when the archive never started: nginx and ImageX share it
    key_json = tokens.share_with_nginx(key_file, tokens.load_secret(key_file))
    store = open_store(settings.store_url)
    await store.open()
    try:
        site_settings = SiteSettings.from_stored(await store.site_settings())
    finally:
        await store.close()
    if bool(certificate) != bool(certificate_key):
        raise SettingError("give both --ssl-certificate and --ssl-certificate-key, or neither")
    # ImageX listening on every address is reached on loopback
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host  # noqa: S104
    js_file = (output / JS_NAME).resolve() if output else js_path
    site = Site(tiles_dir=settings.tiles_dir.resolve(), key_json=key_json, js_file=js_file,
                upstream=upstream or f"{host}:{settings.port}", listen=listen, server_name=server_name,
                max_body=site_settings.max_file_size, certificate=certificate,
                certificate_key=certificate_key)
    config, module = site_config(site), js_module(key_json)
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        (output / SITE_NAME).write_text(config)
        (output / JS_NAME).write_text(module)
    return config, module
