"""trtc-usage from Airflow for several Tencent Cloud accounts: one mapped
task per account and day, `--account NAME --date {{ ds }}`.

Each account has its own rate limit and its own app ids, so the accounts'
exports run side by side (dynamic task mapping over ACCOUNTS, the names of
the accounts file's [[account]] tables) and hold the leases of their own
apps only. An account never runs twice at once: one DAG run at a time
(max_active_runs=1, so a catchup backfill goes day by day), and each mapped
instance takes a slot of the pool `trtc_accounts`, sized to the number of
accounts.

Create the pool once, with one slot per account:
`airflow pools set trtc_accounts 3 "TRTC accounts, one run each at a time"`.

The accounts file comes from the ConfigMap of
jobs/kubernetes/accounts-cronjob.yaml (mounted at /etc/trtc), every
account's keys from the Secret trtc-usage-accounts (the variables the file
names). `reconcile` runs per account, like the single-account DAG's.
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

# The [[account]] names of the accounts file, in any order.
ACCOUNTS = ["cn-main", "cn-games", "intl"]
ACCOUNTS_FILE = "/etc/trtc/accounts.toml"
DEST = "s3://lake/trtc-usage"
IMAGE = "registry.example.com/data/trtc-usage:0.9.0"
POOL = "trtc_accounts"
RUNNER = os.environ.get("TRTC_USAGE_AIRFLOW_RUNNER", "kubernetes")


def export_args(account: str) -> list[str]:
    """The command for one account's day."""
    return [
        "export",
        "--accounts", ACCOUNTS_FILE,
        "--account", account,
        "--date", "{{ ds }}",
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
    dag_id="trtc_usage_accounts",
    description="TRTC per-room usage of several Tencent Cloud accounts, one mapped task each",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 9, 1, tz="Asia/Shanghai"),
    catchup=True,
    max_active_runs=1,
    default_args=default_args,
    tags=["trtc", "usage"],
) as dag:
    wait_for_settle = TimeDeltaSensor(
        task_id="wait_for_settle",
        delta=timedelta(hours=25),
        mode="reschedule",
        pool="default_pool",
    )

    if RUNNER == "bash":
        export = BashOperator.partial(task_id="export").expand(
            bash_command=[" ".join(["trtc-usage", *export_args(a)]) for a in ACCOUNTS]
        )
    else:
        export = KubernetesPodOperator.partial(
            task_id="export",
            name="trtc-usage-export",
            namespace="data",
            image=IMAGE,
            secrets=[
                Secret("env", None, "trtc-usage-accounts"),
                Secret("env", None, "trtc-usage-s3"),
            ],
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
                ),
                k8s.V1Volume(
                    name="accounts",
                    config_map=k8s.V1ConfigMapVolumeSource(name="trtc-usage-accounts"),
                ),
            ],
            volume_mounts=[
                k8s.V1VolumeMount(name="spool", mount_path="/spool"),
                k8s.V1VolumeMount(name="accounts", mount_path="/etc/trtc", read_only=True),
            ],
            container_resources=k8s.V1ResourceRequirements(
                requests={"cpu": "100m", "memory": "96Mi", "ephemeral-storage": "1Gi"},
                limits={"memory": "192Mi"},
            ),
            do_xcom_push=True,
            termination_grace_period=60,
            get_logs=True,
        ).expand(
            arguments=[
                export_args(a) + ["--summary-file", "/airflow/xcom/return.json"]
                for a in ACCOUNTS
            ]
        )

    @task(task_id="reconcile", retries=0, pool="default_pool")
    def reconcile(summary):
        """Fails, without retry, when an account's rooms do not add up."""
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
    reconcile.expand(summary=export.output)
