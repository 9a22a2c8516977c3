"""Retention: what a policy would delete, with the exact bytes garbage collection would free, and applying it.

policy.py       the one policy model (Policy, Rule, Condition, selectors, patterns, durations);
formats/        one parser per format (native YAML, Harbor, ECR, Artifact Registry) and load_policy;
compiler.py     a policy's rules as one SQL query with bound parameters;
engine.py       plan_retention: the steps in engine.sql, over each registry's latest snapshot;
plan.py         RetentionPlan, its frames and the plan JSON (signing.py: its hash and signature);
whatif.py       the side-by-side what-if table;
verify.py       a plan checked against itself and the database before anything is sent (verify.sql);
apply.py        the deletions on the live registry, each candidate re-read first.
"""
