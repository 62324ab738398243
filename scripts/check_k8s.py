"""Checks what the README says of jobs/kubernetes beyond the schemas: a
container with a read-only root filesystem spools (TRTC_SPOOL_DIR) to a
mounted emptyDir with a size limit, and has memory request and limit.

Run by scripts/test with the venv that has kubernetes-validate (and so
PyYAML). Exit 1 naming the manifest and what is missing."""

import sys

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


def main(paths):
    found = [p for path in paths for p in problems(path)]
    for p in found:
        print(p, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
