"""Places images live, behind one interface (base.Source): a registry over the distribution API
(registry.py, with auth.py, pagination.py, tls.py, credentials.py) and a tree of OCI image layouts
(ocilayout.py). Implementations never import each other; factory.open_source picks one for a target."""
