"""The demo: a deterministic synthetic estate, its scans and pods, and the runner behind 'repoaudit demo'.

Tables are data files in ``data/`` (read by ``tables.py``, ``advisories.py``, ``pods.py``); the code
that turns them into files: ``estate.py`` writes the OCI layouts from ``images.py`` (artifact
content) and ``history.py`` (pushes, tags, deletions); ``scans.py`` writes Trivy reports
(``advisories.py``) and a pod listing (``pods.py``) from the collected estate (``collected.py``);
``runner.py`` runs it all.
"""
