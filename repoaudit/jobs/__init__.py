"""What to collect: a CollectJob per registry, read from Flux ImageRepository objects (flux.py) or a
repoaudit config file (configfile.py), and the Flux status each repository would get (status.py).
The one home of Flux."""
