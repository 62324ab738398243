"""Reads a trtc-usage destination with DuckDB, exactly as the README says,
and prints what it saw as JSON: the column types and per-partition totals."""
import json
import sys

import duckdb

dest = sys.argv[1]
src = f"read_parquet('{dest}/room_usage/**/*.parquet', hive_partitioning = true, union_by_name = true)"
types = {name: typ for name, typ, *_ in duckdb.sql(f"DESCRIBE SELECT * FROM {src}").fetchall()}
rows = duckdb.sql(
    f"""SELECT app_id, CAST(usage_date AS VARCHAR), count(*),
               coalesce(sum(audio_seconds), 0), coalesce(sum(video_sd_seconds), 0),
               coalesce(sum(video_hd_seconds), 0), coalesce(sum(video_full_hd_seconds), 0),
               coalesce(sum(video_2k_seconds), 0), coalesce(sum(video_4k_seconds), 0)
        FROM {src} GROUP BY ALL ORDER BY ALL"""
).fetchall()
ids = [r[0] for r in duckdb.sql(f"SELECT room_id FROM {src} ORDER BY room_id").fetchall()]
print(json.dumps({
    "types": types,
    "partitions": [[r[0], r[1], r[2], [int(x) for x in r[3:]]] for r in rows],
    "room_ids": ids,
}))
