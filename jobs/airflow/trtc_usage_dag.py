"""trtc-usage from Airflow: one task per day, `--date {{ ds }}`.

Each DAG run covers one day D in the API's clock (Asia/Shanghai). It first
waits until D has settled (the 24 h `--settle` after D ended, plus an hour
of margin), so the partition it writes is final and never needs a re-fetch;
then it exports D. Backfills are Airflow catchup: every past day
becomes a run, and the pool of one slot keeps the account's single rate
limit (one call every 15 s) respected across all runs and both variants.

Create the pool once: `airflow pools set trtc_api 1 "TRTC API rate limit"`.

After the export, `reconcile` reads the run summary (XCom) and fails,
with no retry, when the day's rooms do not add up to the app's figure
(the `checks` table): a retry cannot change the data, so the failure is
made visible once instead of retried. The export itself runs with
`--checks warn`, so its exit status and retries are about fetching and
writing only.

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
    from airflow.sdk import DAG, task
    from airflow.sdk.exceptions import AirflowFailException
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.decorators import task
    from airflow.exceptions import AirflowFailException

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.secret import Secret
from kubernetes.client import models as k8s
from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.sensors.time_delta import TimeDeltaSensor

APP_IDS = "1400000001,1400000002"
DEST = "s3://lake/trtc-usage"
IMAGE = "registry.example.com/data/trtc-usage:0.9.0"
POOL = "trtc_api"
RUNNER = os.environ.get("TRTC_USAGE_AIRFLOW_RUNNER", "kubernetes")

# The command, shared by both variants. Exit 2 (configuration, credentials)
# is not worth retrying; Airflow retries every failure, so keep retries few.
# Under --log-format json, stdout is the run summary as one JSON object:
# the BashOperator pushes it to XCom as its last line, the pod writes it to
# /airflow/xcom/return.json.
EXPORT_ARGS = [
    "export",
    "--date", "{{ ds }}",
    "--app-id", APP_IDS,
    "--dest", DEST,
    "--log-format", "json",
    "--checks", "warn",
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
            # Large answers and files wait in unnamed temporary files on
            # an emptyDir (about 59 MB per million rooms of one day);
            # memory stays near 50-76 MiB whatever the day's size (README
            # "Performance").
            env_vars={
                "AWS_REGION": "us-east-1",
                "TRTC_SPOOL_DIR": "/spool",
                # The run's metrics, for the alert rules in jobs/prometheus/:
                # "TRTC_PUSHGATEWAY": "http://pushgateway.monitoring:9091",
                # Lineage: the job's events, under this task's run (needs
                # apache-airflow-providers-openlineage; docs/operations.md):
                # "TRTC_OPENLINEAGE_URL": "http://marquez:5000",
                # "OPENLINEAGE_PARENT_ID": "{{ macros.OpenLineageProviderPlugin.lineage_parent_id(task_instance) }}",
            },
            volumes=[
                k8s.V1Volume(
                    name="spool", empty_dir=k8s.V1EmptyDirVolumeSource(size_limit="1Gi")
                )
            ],
            volume_mounts=[k8s.V1VolumeMount(name="spool", mount_path="/spool")],
            container_resources=k8s.V1ResourceRequirements(
                requests={"cpu": "100m", "memory": "96Mi", "ephemeral-storage": "1Gi"},
                limits={"memory": "192Mi"},
            ),
            do_xcom_push=True,  # the run summary JSON, for downstream tasks
            termination_grace_period=60,
            get_logs=True,
        )

    @task(task_id="reconcile", retries=0, pool="default_pool")
    def reconcile(summary):
        """Fails, without retry, when a day's rooms do not add up."""
        import json

        if isinstance(summary, str):
            summary = json.loads(summary)
        failing = summary.get("failed_checks") or []
        if failing:
            raise AirflowFailException(
                "the rooms do not add up to the app's usage (checks table): "
                + "; ".join(
                    f"app {c['app_id']} {c['usage_date']} {c['series']}: rooms "
                    f"{c['room_minutes']:.1f} min, app {c['app_minutes']:.1f} min"
                    for c in failing
                )
            )
        return summary.get("checks", {})

    wait_for_settle >> export
    reconcile(export.output)
