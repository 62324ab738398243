//! OpenLineage: a run emits a RunEvent `START` when it begins and
//! `COMPLETE`, `FAIL` or `ABORT` (a stop on SIGTERM/SIGINT) when it ends,
//! over HTTP (`--openlineage-url`, `POST <URL>/api/v1/lineage`) or to a
//! file (`--openlineage-file`, one event a line). The TRTC actions called
//! are the input datasets, the tables written the outputs, with their
//! schema and output statistics (rows, bytes); the Airflow task's run is
//! the parent when `OPENLINEAGE_PARENT_ID` is set, as Airflow's OpenLineage
//! provider passes it. Spec 2-0-2, the facets' versions of the
//! openlineage-python release the test suite validates the events with.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use url::Url;

use crate::jobs::summary::{Status, Summary};
use crate::lake::store::Destination;
use crate::tables::Table;

/// The spec version the events name.
pub const SCHEMA_URL: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
const SCHEMA_FACET: &str =
    "https://openlineage.io/spec/facets/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet";
const STATISTICS_FACET: &str = "https://openlineage.io/spec/facets/1-0-2/OutputStatisticsOutputDatasetFacet.json#/$defs/OutputStatisticsOutputDatasetFacet";
const PARENT_FACET: &str =
    "https://openlineage.io/spec/facets/1-2-0/ParentRunFacet.json#/$defs/ParentRunFacet";
/// The job's name in its namespace.
pub const JOB_NAME: &str = "trtc_usage.export";
/// How long one event may take to send.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Who produced the events (a URI, as the spec asks).
fn producer() -> String {
    format!("urn:trtc-usage:{}", env!("CARGO_PKG_VERSION"))
}

/// The run this one runs under (an Airflow task), from
/// `OPENLINEAGE_PARENT_ID`: `<namespace>/<job name>/<run id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parent {
    pub namespace: String,
    pub name: String,
    pub run_id: String,
}

impl Parent {
    /// `None` for a value that is not `<namespace>/<job>/<uuid>`.
    pub fn parse(value: &str) -> Option<Parent> {
        let mut parts = value.rsplitn(3, '/');
        let (run_id, name, namespace) = (parts.next()?, parts.next()?, parts.next()?);
        uuid::Uuid::parse_str(run_id).ok()?;
        (!name.is_empty() && !namespace.is_empty()).then(|| Parent {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            run_id: run_id.to_owned(),
        })
    }
}

/// Where events go, and this run's identity.
#[derive(Debug, Clone)]
pub struct Lineage {
    pub url: Option<Url>,
    pub file: Option<std::path::PathBuf>,
    pub namespace: String,
    pub run_id: String,
    pub parent: Option<Parent>,
}

/// What the events say of the run.
pub struct Context<'a> {
    pub dest: &'a Destination,
    /// The TRTC endpoint (the input datasets' namespace).
    pub endpoint: &'a Url,
    /// The tables the run fills.
    pub tables: &'a [Table],
}

/// The (namespace, name) of `table` in the lake `dest`, as OpenLineage
/// names datasets: `file` and the absolute path on local disk,
/// `s3://<bucket>` and the key prefix on S3.
pub fn dataset_of(dest: &Destination, table: Table) -> (String, String) {
    if let Some(dir) = dest.local_path(&dest.table_dir(table)) {
        return ("file".to_owned(), dir.display().to_string());
    }
    let shown = dest.display();
    let rest = shown.strip_prefix("s3://").unwrap_or(shown);
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let prefix = prefix.trim_matches('/');
    let name = match prefix.is_empty() {
        true => table.name().to_owned(),
        false => format!("{prefix}/{}", table.name()),
    };
    (format!("s3://{bucket}"), name)
}

/// The API action a fetched table calls.
fn action_of(table: Table) -> Option<&'static str> {
    crate::jobs::fetch::registry()
        .iter()
        .find(|f| f.table() == table)
        .map(|f| f.action())
}

fn schema_facet(table: Table) -> Value {
    let fields: Vec<Value> = table
        .file_schema()
        .fields()
        .iter()
        .map(|f| json!({"name": f.name(), "type": f.data_type().to_string()}))
        .collect();
    json!({"_producer": producer(), "_schemaURL": SCHEMA_FACET, "fields": fields})
}

impl Lineage {
    /// One event of this run.
    pub fn event(
        &self,
        kind: &str,
        at: DateTime<Utc>,
        cx: &Context<'_>,
        summary: Option<&Summary>,
    ) -> Value {
        let mut run = json!({"runId": self.run_id});
        if let Some(p) = &self.parent {
            run["facets"] = json!({"parent": {
                "_producer": producer(),
                "_schemaURL": PARENT_FACET,
                "run": {"runId": p.run_id},
                "job": {"namespace": p.namespace, "name": p.name},
            }});
        }
        // Inputs: the actions the run calls (at the start) or called.
        let actions: Vec<String> = match summary {
            None => cx
                .tables
                .iter()
                .filter_map(|t| action_of(*t))
                .map(str::to_owned)
                .collect(),
            Some(s) => s
                .calls_by_action
                .iter()
                .filter(|(_, c)| c.calls > 0)
                .map(|(a, _)| a.clone())
                .collect(),
        };
        let endpoint = cx.endpoint.as_str().trim_end_matches('/').to_owned();
        let inputs: Vec<Value> = actions
            .iter()
            .map(|a| json!({"namespace": endpoint, "name": a}))
            .collect();
        // Outputs: the tables the run fills (at the start), or wrote, with
        // what it wrote of each.
        let outputs: Vec<Value> = cx
            .tables
            .iter()
            .filter_map(|&table| {
                let (namespace, name) = dataset_of(cx.dest, table);
                let mut facets = json!({"schema": schema_facet(table)});
                if let Some(s) = summary {
                    let c = s.tables.get(&table).copied().unwrap_or_default();
                    if c.written == 0 {
                        return None;
                    }
                    facets["outputStatistics"] = json!({
                        "_producer": producer(),
                        "_schemaURL": STATISTICS_FACET,
                        "rowCount": c.rows,
                        "size": c.bytes,
                        "fileCount": c.written,
                    });
                }
                Some(json!({
                    "namespace": namespace,
                    "name": name,
                    "facets": facets,
                    "outputFacets": {},
                }))
            })
            .collect();
        json!({
            "eventType": kind,
            "eventTime": at.to_rfc3339_opts(SecondsFormat::Millis, true),
            "producer": producer(),
            "schemaURL": SCHEMA_URL,
            "run": run,
            "job": {"namespace": self.namespace, "name": JOB_NAME},
            "inputs": inputs,
            "outputs": outputs,
        })
    }

    /// Sends `event` where the flags say; the error names where.
    pub async fn send(&self, event: &Value) -> Result<(), String> {
        if let Some(path) = &self.file {
            use std::io::Write;
            let fail = |e: std::io::Error| format!("--openlineage-file {}: {e}", path.display());
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(fail)?;
            writeln!(f, "{event}").map_err(fail)?;
        }
        if let Some(url) = &self.url {
            let target = format!("{}/api/v1/lineage", url.as_str().trim_end_matches('/'));
            let fail = |why: String| {
                format!(
                    "--openlineage-url {url}: sending the {} event failed: {why}",
                    event["eventType"].as_str().unwrap_or("?")
                )
            };
            let client = reqwest::Client::builder()
                .timeout(SEND_TIMEOUT)
                .build()
                .map_err(|e| fail(e.to_string()))?;
            let response = client
                .post(&target)
                .json(event)
                .send()
                .await
                .map_err(|e| fail(e.to_string()))?;
            if !response.status().is_success() {
                return Err(fail(format!("HTTP {}", response.status())));
            }
        }
        Ok(())
    }
}

/// The event type that ends a run: COMPLETE when every partition was
/// exported (exit 0), ABORT when it was stopped, FAIL otherwise.
pub fn end_kind(status: Status) -> &'static str {
    match status {
        Status::Ok | Status::DryRun => "COMPLETE",
        Status::Interrupted => "ABORT",
        Status::PartitionsFailed | Status::ChecksFailed | Status::Fatal => "FAIL",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parent_is_namespace_job_and_run_id() {
        let p =
            Parent::parse("airflow/trtc_usage_daily.export/01890a5f-3d0c-7d6b-9f42-1a2b3c4d5e6f")
                .unwrap();
        assert_eq!(p.namespace, "airflow");
        assert_eq!(p.name, "trtc_usage_daily.export");
        let p = Parent::parse("ns/with/slash/job/01890a5f-3d0c-7d6b-9f42-1a2b3c4d5e6f").unwrap();
        assert_eq!(p.namespace, "ns/with/slash");
        assert_eq!(Parent::parse("airflow/job/not-a-uuid"), None);
        assert_eq!(Parent::parse("just-a-run"), None);
    }

    #[test]
    fn s3_datasets_are_the_bucket_and_the_prefix() {
        let store = std::sync::Arc::new(object_store::memory::InMemory::new());
        let d = Destination::from_store(store, "lake/v1".into(), "s3://bkt/lake/v1");
        assert_eq!(
            dataset_of(&d, Table::ROOM_USAGE),
            ("s3://bkt".to_owned(), "lake/v1/room_usage".to_owned())
        );
    }
}
