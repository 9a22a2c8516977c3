"""status (split from collector.py)."""

from __future__ import annotations

from repoaudit.errors import AuthenticationError, ConfigError, NotFoundError
from repoaudit.model.reference import parse_reference


# Flux's Ready condition reasons, so `repoaudit status` reads like `kubectl get imagerepository -o yaml`.
def flux_reason(exc: BaseException) -> str:
    if isinstance(exc, AuthenticationError):
        return "AuthenticationFailed"
    if isinstance(exc, ConfigError) or (isinstance(exc, NotFoundError) and "NAME_UNKNOWN" in exc.codes):
        return "ImageURLInvalid"
    return "ReadOperationFailed"



def canonical_image_name(registry: str, repository: str) -> str:
    try:
        return parse_reference(f"{registry}/{repository}").canonical
    except ConfigError:
        return f"{registry}/{repository}"  # oci:/path layouts are not references

