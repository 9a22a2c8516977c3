"""Answers: the named queries of queries/*.sql loaded by name (queries.py) and the HTML/Markdown
report built from them (report.py)."""
