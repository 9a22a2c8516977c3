"""The TLS context a registry client uses: system roots, a private CA, a client certificate, or none."""

from __future__ import annotations

import ssl

from repoaudit.errors import ConfigError


def ssl_context(verify: bool | str | ssl.SSLContext, cert: tuple[str, str] | None = None) -> ssl.SSLContext | bool:
    """One SSLContext from the CA bundle path and client certificate options (httpx 0.28 wants contexts).

    ``verify=False`` (``--insecure``) stays ``False``; a ready context is used as given.
    """
    if isinstance(verify, ssl.SSLContext):
        return verify
    if verify is False:
        return False
    try:
        ctx = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
        if not isinstance(verify, str):
            try:
                import certifi  # httpx's own default trust store, when present

                ctx.load_verify_locations(certifi.where())
            except ImportError:
                pass
        if cert:
            ctx.load_cert_chain(*cert)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load TLS files ({verify if isinstance(verify, str) else ''} "
                          f"{' '.join(cert or ())}): {exc}") from None
    return ctx

