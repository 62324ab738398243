"""Loads the DAG with real Apache Airflow (a DagBag import) and checks the
properties the job depends on. Run by scripts/test; exits non-zero on any
problem."""

import os
import sys

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
    }
    for name, ok in checks.items():
        if not ok:
            failures.append(f"{runner}: {name}")
    print(f"{runner}: DAG trtc_usage loaded, tasks {sorted(dag.task_ids)}, operator {type(export).__name__}")

if failures:
    print("FAILED: " + "; ".join(failures))
    sys.exit(1)
print("Airflow DAG check passed for both runners.")
