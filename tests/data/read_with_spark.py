"""Reads every table of a trtc-usage lake with Spark, as the README says
(`spark.read.parquet(<dest>/<table>)`, mergeSchema for evolved columns),
and prints, as JSON, each table's column types and row count per
partition. Spark reads every file in a table's directory whose name does
not start with `_` or `.`, so a stray file there would show up here."""
import json
import sys

from pyspark.sql import SparkSession

dest = sys.argv[1]
spark = (
    SparkSession.builder.master("local[1]")
    .appName("trtc-usage-test")
    .config("spark.ui.enabled", "false")
    .config("spark.ui.showConsoleProgress", "false")
    .config("spark.sql.shuffle.partitions", "1")
    .config("spark.driver.bindAddress", "127.0.0.1")
    .config("spark.driver.host", "127.0.0.1")
    .getOrCreate()
)
spark.sparkContext.setLogLevel("ERROR")
out = {}
import os

tables = ["room_usage", "app_usage", "checks"]
if os.path.isdir(f"{dest}/cost"):
    tables.append("cost")
for table in tables:
    df = spark.read.option("mergeSchema", "true").parquet(f"{dest}/{table}")
    counts = (
        df.groupBy("app_id", "usage_date").count().orderBy("app_id", "usage_date").collect()
    )
    out[table] = {
        "types": {f.name: f.dataType.simpleString() for f in df.schema.fields},
        "partitions": [[int(r["app_id"]), str(r["usage_date"]), int(r["count"])] for r in counts],
    }
print(json.dumps(out))
spark.stop()
