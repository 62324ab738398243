"""Runs every query of docs/queries.sql (shown in docs/reading.md) with DuckDB against
a lake, and prints, as JSON, each query's column types and rows, and the
types of the three tables."""
import json
import re
import sys

import duckdb

queries_file, dest = sys.argv[1], sys.argv[2]
text = open(queries_file, encoding="utf-8").read()
out = {"queries": {}, "types": {}}
for name, sql in re.findall(r"-- name: (\w+)\n(.*?;)", text, re.S):
    sql = sql.replace("'warehouse/", f"'{dest}/")
    rel = duckdb.sql(sql)
    out["queries"][name] = {
        "types": [str(t) for t in rel.types],
        "rows": [[str(v) for v in row] for row in rel.fetchall()],
    }
for table in ["room_usage", "app_usage", "checks"]:
    src = f"read_parquet('{dest}/{table}/**/*.parquet', hive_partitioning = true)"
    out["types"][table] = {
        name: typ for name, typ, *_ in duckdb.sql(f"DESCRIBE SELECT * FROM {src}").fetchall()
    }
print(json.dumps(out))
