"""`python -m serving.healthcheck`: exit 0 if the server on this host is ready, 1 if not; the
server image's HEALTHCHECK. It asks /readyz on 127.0.0.1:DESY_PORT, over HTTPS when
DESY_SSL_CERTFILE is set (as `desy serve` then serves)."""

from __future__ import annotations

import sys

import httpx

from serving.settings import ServerSettings, SettingsError, read


def ready(port: int, tls: bool) -> bool:
    """Whether /readyz on the loopback port answers 200."""
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/readyz"
    try:
        # The certificate names the server's public host, not 127.0.0.1: not verified, on loopback.
        return httpx.get(url, verify=False, timeout=4).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    try:
        settings = read(ServerSettings)
    except SettingsError as err:
        sys.exit(f"error: {err}")
    sys.exit(0 if ready(settings.port, settings.ssl_certfile is not None) else 1)
