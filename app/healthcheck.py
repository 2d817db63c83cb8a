"""The container's health probe: `python -m app.healthcheck` asks the server this process's settings describe
(`IMAGEX_HOST`, `IMAGEX_PORT`, or their `_FILE` forms) for `/healthz`, and exits 0 only on a 2xx answer.

The Dockerfile's HEALTHCHECK runs it, so the check follows the address the server was told to listen on
instead of assuming port 8000 on loopback.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from app.exceptions import SettingError
from app.settings import Settings

# Addresses that mean "every interface": the server is then reached on loopback of the same family.
_ANY_V4 = {"", "0.0.0.0", "*"}  # noqa: S104 - compared with, never bound to
_ANY_V6 = {"::", "[::]"}
TIMEOUT = 8.0


def health_url(host: str, port: int) -> str:
    """The URL of `/healthz` on a server listening on `host:port`, as seen from the same machine."""
    host = host.strip()
    if host in _ANY_V4:
        host = "127.0.0.1"
    elif host in _ANY_V6:
        host = "[::1]"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"  # a bare IPv6 address
    return f"http://{host}:{port}/healthz"


def main() -> int:
    """Probe once; print what was found (Docker keeps it in the container's health log)."""
    try:
        settings = Settings.load()
    except SettingError as error:
        print(f"unhealthy: {error}", file=sys.stderr)
        return 1
    url = health_url(settings.host, settings.port)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:  # noqa: S310 - an http URL we built
            print(f"{url}: {response.status}")
            return 0
    except urllib.error.HTTPError as error:
        print(f"unhealthy: {url} answered {error.code}", file=sys.stderr)
    except (OSError, ValueError) as error:
        print(f"unhealthy: {url}: {error}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
