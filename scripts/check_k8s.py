"""Checks what the README says of jobs/kubernetes beyond the schemas: a
container with a read-only root filesystem spools (TRTC_SPOOL_DIR) to a
mounted emptyDir with a size limit, and has memory request and limit; an
Indexed Job of accounts runs one pod per account of its ConfigMap's
accounts file (`--account $(JOB_COMPLETION_INDEX)`), and the Secret it
reads holds every variable that file names.

Run by scripts/test with the venv that has kubernetes-validate (and so
PyYAML). Exit 1 naming the manifest and what is missing."""

import sys
import tomllib

import yaml


def pod_spec(doc):
    spec = doc["spec"]
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


def problems(path):
    for doc in yaml.safe_load_all(open(path)):
        if not doc or doc.get("kind") not in ("CronJob", "Job"):
            continue
        pod = pod_spec(doc)
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for c in pod["containers"]:
            if not c.get("securityContext", {}).get("readOnlyRootFilesystem"):
                continue
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            spool = env.get("TRTC_SPOOL_DIR")
            if not spool:
                yield f"{path}: container {c['name']} has a read-only root but no TRTC_SPOOL_DIR"
                continue
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            vol = volumes.get(mounts.get(spool, ""), {})
            if "sizeLimit" not in vol.get("emptyDir", {}):
                yield f"{path}: TRTC_SPOOL_DIR {spool} is not an emptyDir with a sizeLimit"
            res = c.get("resources", {})
            for kind in ("requests", "limits"):
                if "memory" not in res.get(kind, {}):
                    yield f"{path}: container {c['name']} has no memory {kind[:-1]}"


def accounts_problems(paths):
    """The Indexed Job of accounts against its ConfigMap and the Secret."""
    docs = [(p, d) for p in paths for d in yaml.safe_load_all(open(p)) if d]
    maps = {d["metadata"]["name"]: d for _, d in docs if d["kind"] == "ConfigMap"}
    secrets = {d["metadata"]["name"]: d for _, d in docs if d["kind"] == "Secret"}
    for path, doc in docs:
        if doc["kind"] != "CronJob":
            continue
        job = doc["spec"]["jobTemplate"]["spec"]
        if job.get("completionMode") != "Indexed":
            continue
        pod = job["template"]["spec"]
        c = pod["containers"][0]
        if c.get("args", [])[-2:] != ["--account", "$(JOB_COMPLETION_INDEX)"]:
            yield f"{path}: the Indexed Job does not pass --account $(JOB_COMPLETION_INDEX)"
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        accounts_path = env.get("TRTC_ACCOUNTS", "")
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        mount_dir, _, file_name = accounts_path.rpartition("/")
        cm_name = volumes.get(mounts.get(mount_dir, ""), {}).get("configMap", {}).get("name")
        if cm_name not in maps or file_name not in maps[cm_name].get("data", {}):
            yield f"{path}: TRTC_ACCOUNTS {accounts_path!r} is not a file of a ConfigMap mounted there"
            continue
        accounts = tomllib.loads(maps[cm_name]["data"][file_name]).get("account", [])
        n = len(accounts)
        if not (n and job.get("completions") == n and job.get("parallelism") == n):
            yield f"{path}: completions/parallelism must equal the {n} accounts of {cm_name}"
        refs = [e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e]
        held = set()
        for name in refs:
            held |= set(secrets.get(name, {}).get("stringData", {}))
        for a in accounts:
            for key in ("secret_id_env", "secret_key_env", "token_env"):
                if key in a and a[key] not in held:
                    yield f"{path}: account {a.get('name')}: {a[key]} is in none of the Secrets {refs}"


def main(paths):
    found = [p for path in paths for p in problems(path)] + list(accounts_problems(paths))
    for p in found:
        print(p, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
