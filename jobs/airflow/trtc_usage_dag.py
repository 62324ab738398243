"""trtc-usage from Airflow: one task per day, `--date {{ ds }}`.

Each DAG run covers one day D in the API's clock (Asia/Shanghai). It first
waits until D has settled (the 24 h `--settle` after D ended, plus an hour
of margin), so the partition it writes is final and never needs a re-fetch;
then it exports D. Backfills are Airflow catchup: every past day
becomes a run, and the pool of one slot keeps the account's single rate
limit (one call every 15 s) respected across all runs and both variants.

Create the pool once: `airflow pools set trtc_api 1 "TRTC API rate limit"`.

Two ways to run the export, chosen by TRTC_USAGE_AIRFLOW_RUNNER where the
DAG is parsed: `kubernetes` (default) starts the container image with
KubernetesPodOperator, credentials from Kubernetes Secrets, and pushes the
run summary to XCom; `bash` runs the `trtc-usage` binary on the worker,
credentials from the worker's environment.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.secret import Secret
from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.sensors.time_delta import TimeDeltaSensor

APP_IDS = "1400000001,1400000002"
DEST = "s3://lake/trtc-usage"
IMAGE = "registry.example.com/data/trtc-usage:0.1.0"
POOL = "trtc_api"
RUNNER = os.environ.get("TRTC_USAGE_AIRFLOW_RUNNER", "kubernetes")

# The command, shared by both variants. Exit 2 (configuration, credentials)
# is not worth retrying; Airflow retries every failure, so keep retries few.
EXPORT_ARGS = [
    "export",
    "--date", "{{ ds }}",
    "--app-id", APP_IDS,
    "--dest", DEST,
    "--log-format", "json",
]

default_args = {
    "owner": "data-eng",
    "retries": 3,
    "retry_delay": timedelta(minutes=5),
    "pool": POOL,
}

with DAG(
    dag_id="trtc_usage",
    description="Tencent Cloud TRTC per-room usage to Parquet, one day per run",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 9, 1, tz="Asia/Shanghai"),
    catchup=True,
    max_active_runs=1,
    max_active_tasks=1,
    default_args=default_args,
    tags=["trtc", "usage"],
) as dag:
    wait_for_settle = TimeDeltaSensor(
        task_id="wait_for_settle",
        # Counted from the interval's end (D+1 00:00): 24 h settle + 1 h.
        delta=timedelta(hours=25),
        mode="reschedule",
        pool="default_pool",
    )

    if RUNNER == "bash":
        export = BashOperator(
            task_id="export",
            bash_command=" ".join(["trtc-usage", *EXPORT_ARGS]),
        )
    else:
        export = KubernetesPodOperator(
            task_id="export",
            name="trtc-usage-export",
            namespace="data",
            image=IMAGE,
            arguments=EXPORT_ARGS + ["--summary-file", "/airflow/xcom/return.json"],
            secrets=[
                Secret("env", None, "trtc-usage-tencentcloud"),
                Secret("env", None, "trtc-usage-s3"),
            ],
            env_vars={"AWS_REGION": "us-east-1"},
            do_xcom_push=True,  # the run summary JSON, for downstream tasks
            termination_grace_period=60,
            get_logs=True,
        )

    wait_for_settle >> export
