"""Validates trtc-usage's OpenLineage events (a file, one JSON object a
line) with the spec's models as openlineage-python generates them from
the spec's JSON schema: every event is rebuilt from those models (their
validators run: eventTime a date-time, producer and schemaURLs URIs, runIds
UUIDs, eventType one of the spec's) and must serialize back to exactly the
event, so no field is missing, extra or of another shape; and the spec
version (and each facet's) the event names must be the models' own.
Prints the event types, one a line."""
import json
import sys

from openlineage.client.generated import base, output_statistics_output_dataset as stats
from openlineage.client.generated import parent_run, schema_dataset
from openlineage.client.serde import Serde


def build(e):
    base.set_producer(e["producer"])
    run_facets = {}
    for key, f in (e["run"].get("facets") or {}).items():
        assert key == "parent", key
        run_facets[key] = parent_run.ParentRunFacet(
            run=parent_run.Run(runId=f["run"]["runId"]),
            job=parent_run.Job(namespace=f["job"]["namespace"], name=f["job"]["name"]),
        )
    outputs = []
    for o in e["outputs"]:
        facets = {}
        for key, f in o["facets"].items():
            if key == "schema":
                facets[key] = schema_dataset.SchemaDatasetFacet(
                    fields=[
                        schema_dataset.SchemaDatasetFacetFields(name=c["name"], type=c["type"])
                        for c in f["fields"]
                    ]
                )
            elif key == "outputStatistics":
                facets[key] = stats.OutputStatisticsOutputDatasetFacet(
                    rowCount=f["rowCount"], size=f["size"], fileCount=f["fileCount"]
                )
            else:
                raise AssertionError(f"unexpected facet {key}")
        outputs.append(
            base.OutputDataset(namespace=o["namespace"], name=o["name"], facets=facets)
        )
    inputs = [base.InputDataset(namespace=i["namespace"], name=i["name"]) for i in e["inputs"]]
    return base.RunEvent(
        eventType=base.EventType[e["eventType"]],
        eventTime=e["eventTime"],
        producer=e["producer"],
        run=base.Run(runId=e["run"]["runId"], facets=run_facets),
        job=base.Job(namespace=e["job"]["namespace"], name=e["job"]["name"]),
        inputs=inputs,
        outputs=outputs,
    )


def normalized(v):
    """The event as Serde writes it: no empty dicts or lists, no nulls."""
    if isinstance(v, dict):
        out = {k: normalized(x) for k, x in v.items()}
        return {k: x for k, x in out.items() if x not in (None, {}, [])}
    if isinstance(v, list):
        return [normalized(x) for x in v]
    return v


for line in open(sys.argv[1], encoding="utf-8"):
    event = json.loads(line)
    rebuilt = json.loads(Serde.to_json(build(event)))
    if normalized(rebuilt) != normalized(event):
        sys.exit(f"event differs from the spec's model:\nours:  {json.dumps(event, sort_keys=True)}\nmodel: {json.dumps(rebuilt, sort_keys=True)}")
    print(event["eventType"])
