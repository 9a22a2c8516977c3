"""``Link: <...>; rel="next"`` pagination, shared by the catalog and tag listings."""

from __future__ import annotations

import re

import httpx

_LINK = re.compile(r'<([^>]*)>\s*;([^,]*)')


def next_link(response: httpx.Response) -> httpx.URL | None:
    """The next page's URL, resolved against the request URL.

    Distribution sends a relative link (``</v2/_catalog?last=b&n=2>; rel="next"``);
    others send absolute ones. Either way the result is absolute.
    """
    header = response.headers.get("link")
    if not header:
        return None
    for target, params in _LINK.findall(header):
        if re.search(r'rel\s*=\s*"?next"?', params):
            return response.request.url.join(target)
    return None
