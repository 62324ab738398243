//! `checks` as a derived table: the per-series totals the `room_usage` and
//! `app_usage` manifests record, compared ([`crate::tables::checks`]);
//! no Parquet file is read.

use std::collections::BTreeMap;

use futures::FutureExt;
use futures::future::BoxFuture;
use tracing::warn;

use crate::jobs::derive::{Context, Derived, Inputs, Settings};
use crate::jobs::partition::{self, Written};
use crate::jobs::summary::{Partition, Summary};
use crate::lake::manifest::{CheckInfo, DerivedInfo, Manifest};
use crate::lake::write::{self, CallInfo};
use crate::tables::Table;
use crate::tables::checks;
use crate::tables::normalize::HeaderInfo;

pub struct Checks {
    /// A fraction: 0.01 is 1%.
    tolerance: f64,
}

pub fn register(settings: &Settings) -> Option<Box<dyn Derived>> {
    Some(Box::new(Checks {
        tolerance: settings.check_tolerance,
    }))
}

impl Derived for Checks {
    fn table(&self) -> Table {
        Table::CHECKS
    }

    fn settings(&self, _p: Partition) -> BTreeMap<String, String> {
        BTreeMap::from([("tolerance".to_owned(), self.tolerance.to_string())])
    }

    fn plan_action(&self) -> &'static str {
        "check"
    }

    /// A check written before manifests recorded `derived` (0.5) is current
    /// when it compared the answers both inputs hold, at this tolerance.
    fn is_current(&self, existing: &Manifest, p: Partition, inputs: &Inputs) -> bool {
        if existing.derived.is_some() {
            return existing.derived == Some(super::info(self, p, inputs));
        }
        let request_id = |t| inputs.get(&t).map(|m| m.request_id.as_str());
        existing.check.as_ref().is_some_and(|c| {
            Some(c.room_request_id.as_str()) == request_id(Table::ROOM_USAGE)
                && Some(c.app_request_id.as_str()) == request_id(Table::APP_USAGE)
                && c.tolerance == self.tolerance
        })
    }

    fn compute<'a>(
        &'a self,
        cx: &'a Context<'a>,
        p: Partition,
        inputs: &'a Inputs,
        info: DerivedInfo,
        summary: &'a mut Summary,
    ) -> BoxFuture<'a, Result<Option<Written>, String>> {
        async move {
            let (room, app) = (&inputs[&Table::ROOM_USAGE], &inputs[&Table::APP_USAGE]);
            if room.totals.is_empty() {
                // A manifest of 0.2 (format 2) records no totals: comparing
                // would count the rooms as 0. `rebuild --tables room_usage`
                // adds them from the raw zone, with no API call.
                warn!(app_id = p.app_id, usage_date = %p.usage_date, "No check: the room_usage manifest predates per-series totals (written by 0.2); `trtc-usage rebuild --tables room_usage,checks` for this day adds them with no API call.");
                return Ok(None);
            }
            let (written, outcome) = write_checks(cx, room, app, self.tolerance, info).await?;
            summary.checked(p, &outcome);
            let failing: Vec<String> = outcome
                .failed()
                .map(|r| {
                    format!(
                        "{}: rooms {:.1} min, app {:.1} min (allowed ±{:.1})",
                        r.series, r.room_minutes, r.app_minutes, r.tolerance
                    )
                })
                .collect();
            if !failing.is_empty() {
                warn!(
                    app_id = p.app_id,
                    usage_date = %p.usage_date,
                    room_request_id = %room.request_id,
                    app_request_id = %app.request_id,
                    series = %failing.join("; "),
                    "The rooms do not add up to the app's usage."
                );
            }
            Ok(Some(written))
        }
        .boxed()
    }
}

/// Compares the two manifests of one (app, day) and commits the result as
/// its `checks` partition; `tolerance` is a fraction (0.01 is 1%).
async fn write_checks(
    cx: &Context<'_>,
    room: &Manifest,
    app: &Manifest,
    tolerance: f64,
    derived: DerivedInfo,
) -> Result<(Written, checks::Outcome), String> {
    let started = std::time::Instant::now();
    let checked_at = crate::tencent::api::now_micros();
    let outcome = checks::compare(
        checks::Input {
            request_id: &room.request_id,
            totals: &room.totals,
        },
        checks::Input {
            request_id: &app.request_id,
            totals: &app.totals,
        },
        tolerance,
        checked_at,
    );
    let call = CallInfo {
        table: Table::CHECKS,
        app_id: room.app_id,
        day: room.usage_date,
        request_id: String::new(),
        fetched_at: checked_at,
        start_time: String::new(),
        end_time: String::new(),
        utc_offset: cx.utc_offset.clone(),
        body: None,
        raw_object: None,
        calls: Vec::new(),
        check: Some(CheckInfo {
            room_request_id: room.request_id.clone(),
            app_request_id: app.request_id.clone(),
            tolerance,
            failed_series: outcome.failed().map(|r| r.series.clone()).collect(),
        }),
        derived: Some(derived),
    };
    let encoded = write::encode_batch(&outcome.batch, HeaderInfo::default(), BTreeMap::new())
        .map_err(|e| e.to_string())?;
    let written = partition::commit(cx.dest, &call, encoded, started, 0).await?;
    Ok((written, outcome))
}
