"""The DuckDB database: connecting and migrating (database.py), the staged snapshot writer
(writer.py), the tables kept at commit (kept.py), merge of shard databases, exports and DataFrames."""
