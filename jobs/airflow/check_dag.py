"""Loads the DAG with real Apache Airflow (a DagBag import) and checks the
properties the job depends on. Run by scripts/test; exits non-zero on any
problem."""

import os
import sys
import tomllib

here = os.path.dirname(os.path.abspath(__file__))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")

try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:
    from airflow.models.dagbag import DagBag

failures = []
for runner in ("kubernetes", "bash"):
    os.environ["TRTC_USAGE_AIRFLOW_RUNNER"] = runner
    bag = DagBag(dag_folder=os.path.join(here, "trtc_usage_dag.py"))
    if bag.import_errors:
        failures.append(f"{runner}: import errors: {bag.import_errors}")
        continue
    dag = bag.dags.get("trtc_usage")
    if dag is None:
        failures.append(f"{runner}: no DAG trtc_usage")
        continue
    export = dag.get_task("export")
    args = getattr(export, "arguments", None) or export.bash_command
    args = " ".join(args) if isinstance(args, list) else args
    checks = {
        "--date {{ ds }}": "--date {{ ds }}" in args,
        "pool trtc_api": export.pool == "trtc_api",
        "max_active_tasks 1": dag.max_active_tasks == 1,
        "catchup": bool(dag.catchup),
        "retries": export.retries >= 1,
        "waits for settle": dag.get_task("wait_for_settle").downstream_task_ids == {"export"},
        "export runs with --checks warn": "--checks warn" in args,
        # The pod spools to an emptyDir and has a memory limit.
        "pod spools to an emptyDir, memory limited": runner == "bash" or (
            (
                export.env_vars.get("TRTC_SPOOL_DIR") == "/spool"
                if isinstance(export.env_vars, dict)
                else any(e.name == "TRTC_SPOOL_DIR" and e.value == "/spool" for e in export.env_vars)
            )
            and any(m.mount_path == "/spool" and m.name == "spool" for m in export.volume_mounts)
            and any(v.name == "spool" and v.empty_dir is not None for v in export.volumes)
            and export.container_resources.limits.get("memory") == "192Mi"
        ),
        "reconcile after export, never retried": (
            "reconcile" in dag.task_ids
            and export.downstream_task_ids == {"reconcile"}
            and dag.get_task("reconcile").retries == 0
        ),
    }
    for name, ok in checks.items():
        if not ok:
            failures.append(f"{runner}: {name}")
    print(f"{runner}: DAG trtc_usage loaded, tasks {sorted(dag.task_ids)}, operator {type(export).__name__}")

# reconcile's callable, run on summaries like the job prints.
os.environ["TRTC_USAGE_AIRFLOW_RUNNER"] = "bash"
bag = DagBag(dag_folder=os.path.join(here, "trtc_usage_dag.py"))
fn = bag.dags["trtc_usage"].get_task("reconcile").python_callable
ok = '{"status": "ok", "checks": {"passed": 2, "failed": 0}, "failed_checks": []}'
if fn(ok) != {"passed": 2, "failed": 0}:
    failures.append("reconcile: a passing summary")
bad = {"checks": {"passed": 0, "failed": 1}, "failed_checks": [{"app_id": 1, "usage_date": "2026-11-20",
       "series": "audio", "room_minutes": 10.0, "app_minutes": 15.0, "tolerance": 1.0}]}
try:
    fn(bad)
    failures.append("reconcile: a failing summary did not fail")
except Exception as e:  # AirflowFailException
    if type(e).__name__ != "AirflowFailException" or "audio: rooms 10.0 min, app 15.0 min" not in str(e):
        failures.append(f"reconcile: {type(e).__name__}: {e}")

# The accounts DAG: one mapped export per account of the file, a pool, one
# DAG run at a time (so an account never runs twice at once).
for runner in ("kubernetes", "bash"):
    os.environ["TRTC_USAGE_AIRFLOW_RUNNER"] = runner
    bag = DagBag(dag_folder=os.path.join(here, "trtc_usage_accounts_dag.py"))
    if bag.import_errors:
        failures.append(f"accounts {runner}: import errors: {bag.import_errors}")
        continue
    dag = bag.dags.get("trtc_usage_accounts")
    if dag is None:
        failures.append(f"accounts {runner}: no DAG trtc_usage_accounts")
        continue
    export = dag.get_task("export")
    mapped = export.expand_input.value
    per_account = mapped.get("arguments") or mapped.get("bash_command") or []
    texts = [" ".join(a) if isinstance(a, list) else a for a in per_account]
    with open(os.path.join(here, "..", "accounts.example.toml"), "rb") as f:
        names = [a["name"] for a in tomllib.load(f)["account"]]
    pool = export.partial_kwargs.get("pool")
    checks = {
        "mapped, one export per account of the file": sorted(
            t.split("--account ")[1].split()[0] for t in texts
        ) == sorted(names),
        "every export: --accounts, --date {{ ds }}, --checks warn": all(
            "--accounts /etc/trtc/accounts.toml" in t and "--date {{ ds }}" in t and "--checks warn" in t
            for t in texts
        ),
        "pool trtc_accounts": pool == "trtc_accounts",
        "one DAG run at a time": dag.max_active_runs == 1,
        "catchup": bool(dag.catchup),
        "waits for settle": dag.get_task("wait_for_settle").downstream_task_ids == {"export"},
        "reconcile per account, never retried": (
            export.downstream_task_ids == {"reconcile"}
            and dag.get_task("reconcile").partial_kwargs.get("retries") == 0
        ),
        "the pod mounts the accounts ConfigMap": runner == "bash" or any(
            v.name == "accounts" and v.config_map is not None and v.config_map.name == "trtc-usage-accounts"
            for v in export.partial_kwargs["volumes"]
        ),
    }
    for name, ok in checks.items():
        if not ok:
            failures.append(f"accounts {runner}: {name}")
    print(f"accounts {runner}: DAG trtc_usage_accounts loaded, tasks {sorted(dag.task_ids)}, {len(texts)} mapped exports")

if failures:
    print("FAILED: " + "; ".join(failures))
    sys.exit(1)
print("Airflow DAG check passed for both DAGs and both runners.")
