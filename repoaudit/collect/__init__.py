"""Collection: the collector walks a source's repositories, tags and manifests into a snapshot writer;
selection.py picks repositories (globs, shards), progress.py reports to people."""
