//! `status`: what the lake holds over a range, from its manifests alone (no
//! API call, no Tencent credentials): per table and app, the days that are
//! final, still settling or missing, and the raw answers kept. `--verify`
//! also reads every file and compares its size and SHA-256 with its
//! manifest.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::NaiveDate;
use futures::StreamExt;
use serde::Serialize;

use crate::jobs::config::LakeScope;
use crate::jobs::plan;
use crate::lake::manifest;
use crate::lake::raw;
use crate::tables::Table;

/// Everything `status` needs, checked.
#[derive(Debug, Clone)]
pub struct StatusConfig {
    pub scope: LakeScope,
    pub settle: Duration,
    pub verify: bool,
    /// The tables runs were asked to fill (`lake.json`): a derived one is
    /// expected wherever its inputs are, so its failed days show missing.
    pub asked: Vec<Table>,
}

/// A partition whose file does not match its manifest.
#[derive(Debug, Clone, Serialize)]
pub struct Damaged {
    pub usage_date: NaiveDate,
    pub problem: String,
}

/// One app's days in one table.
#[derive(Debug, Clone, Serialize)]
pub struct AppStatus {
    pub app_id: u64,
    #[serde(rename = "final")]
    pub final_days: Vec<NaiveDate>,
    pub settling: Vec<NaiveDate>,
    pub missing: Vec<NaiveDate>,
    /// Fetched (a raw answer is kept) but never written: the partition
    /// failed, on bad data or a failed write.
    pub failed: Vec<NaiveDate>,
    /// Only with `--verify`.
    pub damaged: Vec<Damaged>,
    /// In `checks`: the days whose rooms do not add up to the app's figure.
    pub failed_checks: Vec<NaiveDate>,
    /// In `checks`: days whose check compared answers the lake no longer
    /// holds (an input partition is gone, or was rewritten since). Not
    /// final: the next export recomputes them.
    pub stale: Vec<NaiveDate>,
    /// Days whose manifest names a raw answer the raw zone lacks: the
    /// partition is whole, but can no longer be rebuilt.
    pub raw_missing: Vec<NaiveDate>,
    /// Raw answers kept for this app's days in the range.
    pub raw_objects: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableStatus {
    pub table: String,
    /// The range looked at; `None` when the table holds nothing.
    pub start: Option<NaiveDate>,
    pub end: Option<NaiveDate>,
    pub apps: Vec<AppStatus>,
}

/// What `status` prints.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub dest: String,
    /// Whether `--dest` holds a lake at all (a table, the raw zone or the
    /// job's own directory): false for a mistyped path.
    pub lake: bool,
    pub verified: bool,
    pub tables: Vec<TableStatus>,
}

impl StatusReport {
    /// Whether `--verify` found a file that does not match its manifest, a
    /// raw answer that is gone, or a stale check (without `--verify`, these
    /// are shown, and the exit status stays 0).
    pub fn has_damage(&self) -> bool {
        self.verified
            && self
                .tables
                .iter()
                .flat_map(|t| &t.apps)
                .any(|a| !a.damaged.is_empty() || !a.raw_missing.is_empty() || !a.stale.is_empty())
    }

    /// The human form: a table per lake table, missing days as ranges.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if !self.lake {
            out.push_str(&format!(
                "{}: no lake here (no table, no raw zone): is --dest right?\n",
                self.dest
            ));
            return out;
        }
        for t in &self.tables {
            let (Some(start), Some(end)) = (t.start, t.end) else {
                out.push_str(&format!("{}: empty\n", t.table));
                continue;
            };
            out.push_str(&format!("{} {start}..{end} in {}\n", t.table, self.dest));
            out.push_str(&format!(
                "  {:<12} {:>6} {:>9} {:>8} {:>7} {:>8} {:>6}\n",
                "app_id", "final", "settling", "missing", "failed", "damaged", "raw"
            ));
            for a in &t.apps {
                let damaged = if self.verified {
                    a.damaged.len().to_string()
                } else {
                    "-".into()
                };
                out.push_str(&format!(
                    "  {:<12} {:>6} {:>9} {:>8} {:>7} {:>8} {:>6}\n",
                    a.app_id,
                    a.final_days.len(),
                    a.settling.len(),
                    a.missing.len(),
                    a.failed.len(),
                    damaged,
                    a.raw_objects
                ));
                if !a.missing.is_empty() {
                    out.push_str(&format!("    missing: {}\n", day_ranges(&a.missing)));
                }
                if !a.failed.is_empty() {
                    out.push_str(&format!("    failed: {}\n", day_ranges(&a.failed)));
                }
                if !a.failed_checks.is_empty() {
                    out.push_str(&format!(
                        "    rooms do not add up: {}\n",
                        day_ranges(&a.failed_checks)
                    ));
                }
                if !a.settling.is_empty() {
                    out.push_str(&format!("    settling: {}\n", day_ranges(&a.settling)));
                }
                if !a.stale.is_empty() {
                    out.push_str(&format!(
                        "    stale: {} (compared answers the lake no longer holds; the next export recomputes it)\n",
                        day_ranges(&a.stale)
                    ));
                }
                if !a.raw_missing.is_empty() {
                    out.push_str(&format!(
                        "    raw answer missing: {} (the partition is whole but cannot be rebuilt; `export --force` for the day fetches it again while the API keeps it)\n",
                        day_ranges(&a.raw_missing)
                    ));
                }
                for d in &a.damaged {
                    out.push_str(&format!("    damaged: {} {}\n", d.usage_date, d.problem));
                }
            }
        }
        out
    }
}

/// `2026-11-01..2026-11-03, 2026-11-07`: sorted days as runs.
pub fn day_ranges(days: &[NaiveDate]) -> String {
    let mut runs: Vec<(NaiveDate, NaiveDate)> = Vec::new();
    for &d in days {
        match runs.last_mut() {
            Some((_, end)) if end.succ_opt() == Some(d) => *end = d,
            _ => runs.push((d, d)),
        }
    }
    runs.iter()
        .map(|(s, e)| {
            if s == e {
                s.to_string()
            } else {
                format!("{s}..{e}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn table_status(cfg: &StatusConfig, table: Table) -> Result<TableStatus, String> {
    let scope = &cfg.scope;
    let done = manifest::list(&scope.dest, table)
        .await
        .map_err(|e| e.to_string())?;
    let raws = raw::list(&scope.dest, table, scope.app_ids.as_deref())
        .await
        .map_err(|e| e.to_string())?;
    let mut expected = Vec::new();
    if !table.is_fetched() && cfg.asked.contains(&table) {
        for &input in table.inputs() {
            expected.extend(
                manifest::list(&scope.dest, input)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
    }
    let found = done
        .iter()
        .copied()
        .chain(raws.keys().copied())
        .chain(expected);
    let found: Vec<(u64, NaiveDate)> = found.filter(|p| scope.holds(p)).collect();
    let (start, end) = match scope.days {
        Some(range) => range,
        None => match (
            found.iter().map(|(_, d)| *d).min(),
            found.iter().map(|(_, d)| *d).max(),
        ) {
            (Some(s), Some(e)) => (s, e),
            _ => {
                return Ok(TableStatus {
                    table: table.name().into(),
                    start: None,
                    end: None,
                    apps: vec![],
                });
            }
        },
    };
    let apps: BTreeSet<u64> = match &scope.app_ids {
        Some(ids) => ids.iter().copied().collect(),
        None => found.iter().map(|(a, _)| *a).collect(),
    };
    let mut statuses = BTreeMap::new();
    for &app_id in &apps {
        let raw_objects = raws
            .range((app_id, start)..=(app_id, end))
            .map(|(_, objects)| objects.len())
            .sum();
        statuses.insert(
            app_id,
            AppStatus {
                app_id,
                final_days: vec![],
                settling: vec![],
                missing: vec![],
                failed: vec![],
                damaged: vec![],
                failed_checks: vec![],
                stale: vec![],
                raw_missing: vec![],
                raw_objects,
            },
        );
    }
    let days: Vec<NaiveDate> = start.iter_days().take_while(|d| *d <= end).collect();
    let wanted: Vec<(u64, NaiveDate)> = days
        .iter()
        .flat_map(|&d| apps.iter().map(move |&a| (a, d)))
        .collect();
    let done = &done;
    let read = futures::stream::iter(wanted)
        .map(|(app, day)| async move {
            if !done.contains(&(app, day)) {
                return (app, day, (Ok(None), None, Inputs::Final));
            }
            let m = manifest::read(&scope.dest, table, app, day).await;
            let damage = match (&m, cfg.verify) {
                (Ok(Some(m)), true) => manifest::file_problem(&scope.dest, table, m, true)
                    .await
                    .map(|p| p.to_string()),
                _ => None,
            };
            let stale = match &m {
                Ok(Some(m)) => inputs_of(scope, app, day, m, cfg.settle).await,
                _ => Inputs::Final,
            };
            (app, day, (m, damage, stale))
        })
        .buffered(16)
        .collect::<Vec<_>>()
        .await;
    for (app, day, (m, damage, stale)) in read {
        let s = statuses.get_mut(&app).expect("every app has an entry");
        let kept = raws.get(&(app, day)).map_or(&[][..], |o| &o[..]);
        record_day(cfg, s, day, m, damage, stale, kept);
    }
    Ok(TableStatus {
        table: table.name().into(),
        start: Some(start),
        end: Some(end),
        apps: statuses.into_values().collect(),
    })
}

/// What day `day` of an app's partitions is, from its manifest `m`, the
/// damage `--verify` found, where its inputs stand and the raw answers
/// `kept` for it.
fn record_day(
    cfg: &StatusConfig,
    s: &mut AppStatus,
    day: NaiveDate,
    m: Result<Option<manifest::Manifest>, manifest::ManifestError>,
    damage: Option<String>,
    stale: Inputs,
    kept: &[raw::RawObject],
) {
    let scope = &cfg.scope;
    // Every raw answer the manifest names must still be there (one per
    // call of a partition of several).
    if let Ok(Some(m)) = &m {
        let named = m.calls.iter().filter_map(|c| c.raw_object.as_ref());
        let named: Vec<&String> = match m.calls.is_empty() {
            true => m.raw_object.iter().collect(),
            false => named.collect(),
        };
        let held = |object: &&String| {
            kept.iter()
                .any(|o| scope.dest.relative(&o.path) == **object)
        };
        if !named.iter().all(held) {
            s.raw_missing.push(day);
        }
    }

    if let Ok(Some(m)) = &m
        && m.check
            .as_ref()
            .is_some_and(|c| !c.failed_series.is_empty())
    {
        s.failed_checks.push(day);
    }
    match m {
        Ok(Some(_)) if stale == Inputs::Stale => s.stale.push(day),
        // A derived partition is final only when its inputs are.
        Ok(Some(m))
            if stale == Inputs::Final
                && plan::is_final(day, scope.offset, cfg.settle, m.fetched_at) =>
        {
            s.final_days.push(day)
        }
        Ok(Some(_)) => s.settling.push(day),
        Ok(None) if !kept.is_empty() => s.failed.push(day),
        Ok(None) => s.missing.push(day),
        Err(e) => s.damaged.push(Damaged {
            usage_date: day,
            problem: e.to_string(),
        }),
    }
    if let Some(problem) = damage {
        s.damaged.push(Damaged {
            usage_date: day,
            problem,
        });
    }
}

/// Where a partition's inputs stand: a fetched partition has none (final).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inputs {
    /// Every input is in the lake with the answer the partition was
    /// computed from, and final.
    Final,
    /// As `Final`, but an input is still settling: so is the partition.
    Settling,
    /// An input is gone or holds another answer now.
    Stale,
}

/// Whether a derived partition was computed from the answers its input
/// partitions hold now (each input's manifest there, with the RequestId it
/// names), and whether those are final.
async fn inputs_of(
    scope: &LakeScope,
    app: u64,
    day: NaiveDate,
    m: &manifest::Manifest,
    settle: std::time::Duration,
) -> Inputs {
    // Checks of 0.5 name their two inputs in `check` only.
    let inputs: Vec<(Table, String)> = match (&m.derived, &m.check) {
        (Some(d), _) => d
            .inputs
            .iter()
            .map(|(t, r)| (crate::jobs::table_named(t), r.clone()))
            .map(|(t, r)| t.map(|t| (t, r)))
            .collect::<Option<_>>()
            .unwrap_or_default(),
        (None, Some(c)) => vec![
            (Table::ROOM_USAGE, c.room_request_id.clone()),
            (Table::APP_USAGE, c.app_request_id.clone()),
        ],
        (None, None) => return Inputs::Final,
    };
    let mut state = Inputs::Final;
    for (table, request_id) in inputs {
        let now = manifest::read(&scope.dest, table, app, day)
            .await
            .ok()
            .flatten();
        match now {
            Some(input) if input.request_id == request_id => {
                if !plan::is_final(day, scope.offset, settle, input.fetched_at) {
                    state = Inputs::Settling;
                }
            }
            _ => return Inputs::Stale,
        }
    }
    state
}

/// Reads the lake's state in scope.
pub async fn run(cfg: &StatusConfig) -> Result<StatusReport, String> {
    cfg.scope
        .dest
        .check_layout()
        .await
        .map_err(|e| e.to_string())?;
    let lake = cfg
        .scope
        .dest
        .holds_lake()
        .await
        .map_err(|e| e.to_string())?;
    if !lake {
        tracing::warn!(dest = %cfg.scope.dest.display(), "No lake here (no table, no raw zone): is --dest right?");
        return Ok(StatusReport {
            dest: cfg.scope.dest.display().to_owned(),
            lake,
            verified: cfg.verify,
            tables: Vec::new(),
        });
    }
    let mut tables = Vec::new();
    for &table in &cfg.scope.tables {
        tables.push(table_status(cfg, table).await?);
    }
    Ok(StatusReport {
        dest: cfg.scope.dest.display().to_owned(),
        lake,
        verified: cfg.verify,
        tables,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_fold_into_runs() {
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        let days = [
            d("2026-11-01"),
            d("2026-11-02"),
            d("2026-11-03"),
            d("2026-11-07"),
        ];
        assert_eq!(day_ranges(&days), "2026-11-01..2026-11-03, 2026-11-07");
        assert_eq!(day_ranges(&[]), "");
    }
}
