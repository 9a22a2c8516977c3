"""Pure values: image references, manifests and the registry documents' schemas, options, limits,
retry policy, timestamps, formatting. Imports nothing of repoaudit but errors and the loader."""
