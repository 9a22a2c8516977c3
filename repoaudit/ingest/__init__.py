"""Evidence from outside the registry: scanner reports (scans.py: Trivy, Grype, CycloneDX) and pod
listings (pods.py), loaded into the database by load.py."""
