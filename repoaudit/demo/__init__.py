"""The demo: a deterministic synthetic estate (estate.py), its scans and pods (scans.py) and the
runner behind 'repoaudit demo' (runner.py)."""
