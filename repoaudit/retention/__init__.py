"""Retention policies (policies.py: native, Harbor, ECR, Artifact Registry), the engine that evaluates
them with exact reclaimable bytes (engine.py), the what-if table (whatif.py), plan signatures
(signing.py) and apply."""
