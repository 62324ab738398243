-- Example queries over the lake at ./warehouse, for DuckDB. docs/reading.md
-- shows them; tests/data/run_queries.py runs every one against a demo lake
-- (the path 'warehouse/' replaced by the test's), so they stay true.

-- name: minutes_per_resolution_per_day
SELECT app_id, usage_date,
       sum(audio_seconds) / 60 AS audio_min,
       sum(video_sd_seconds) / 60 AS sd_min,
       sum(video_hd_seconds) / 60 AS hd_min,
       sum(video_full_hd_seconds) / 60 AS full_hd_min,
       sum(video_2k_seconds) / 60 AS video_2k_min,
       sum(video_4k_seconds) / 60 AS video_4k_min
FROM read_parquet('warehouse/room_usage/**/*.parquet', hive_partitioning = true)
GROUP BY ALL ORDER BY ALL;

-- name: busiest_five_minutes
SELECT app_id, interval_start,
       coalesce(audio_minutes, 0) + coalesce(video_sd_minutes, 0)
         + coalesce(video_hd_minutes, 0) + coalesce(video_full_hd_minutes, 0)
         + coalesce(video_2k_minutes, 0) + coalesce(video_4k_minutes, 0) AS minutes
FROM read_parquet('warehouse/app_usage/**/*.parquet', hive_partitioning = true)
ORDER BY minutes DESC, interval_start LIMIT 5;

-- name: top_rooms
SELECT app_id, room_id,
       sum(coalesce(audio_seconds, 0) + coalesce(video_sd_seconds, 0)
           + coalesce(video_hd_seconds, 0) + coalesce(video_full_hd_seconds, 0)
           + coalesce(video_2k_seconds, 0) + coalesce(video_4k_seconds, 0)) / 60 AS minutes
FROM read_parquet('warehouse/room_usage/**/*.parquet', hive_partitioning = true)
GROUP BY ALL ORDER BY minutes DESC, room_id LIMIT 10;

-- name: failing_checks
SELECT app_id, usage_date, series, room_minutes, app_minutes, difference, tolerance
FROM read_parquet('warehouse/checks/**/*.parquet', hive_partitioning = true)
WHERE status = 'fail'
ORDER BY ALL;

-- name: rooms_against_app_per_day
WITH rooms AS (
  SELECT app_id, usage_date, sum(audio_seconds) / 60 AS room_audio_min
  FROM read_parquet('warehouse/room_usage/**/*.parquet', hive_partitioning = true)
  GROUP BY ALL
), app AS (
  SELECT app_id, usage_date, sum(audio_minutes) AS app_audio_min
  FROM read_parquet('warehouse/app_usage/**/*.parquet', hive_partitioning = true)
  GROUP BY ALL
)
SELECT app_id, usage_date, room_audio_min, app_audio_min
FROM rooms JOIN app USING (app_id, usage_date)
ORDER BY ALL;
