//! Many containers at once: apply a request to each, in parallel with a bound, and gather one
//! row per container.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::engine::{Engine, Failure};
use crate::error::ErrorKind;
use crate::report::Report;
use crate::request::Request;

/// One container of a fleet run: the engine of its node and what to do.
#[derive(Clone)]
pub struct FleetItem {
    /// The node's name (for the summary).
    pub node: String,
    /// The engine of that node. Give items on one node clones of one engine, so that they
    /// share its runfile cache and download lock.
    pub engine: Engine,
    /// The request.
    pub request: Request,
}

/// How one container of a fleet run ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FleetRow {
    /// The container.
    pub ct: String,
    /// Its node.
    pub node: String,
    /// The GPU selection.
    pub gpus: String,
    /// `unchanged`, `changed` or `failed`.
    pub result: &'static str,
    /// The error's kind when it failed.
    pub error_kind: Option<ErrorKind>,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
    /// The whole report.
    pub report: Report,
}

impl FleetRow {
    fn from_outcome(item: &FleetItem, out: Result<Report, Failure>, ms: u64) -> FleetRow {
        let (result, error_kind, report) = match out {
            Ok(r) if r.changed => ("changed", None, r),
            Ok(r) => ("unchanged", None, r),
            Err(f) => ("failed", Some(f.error.kind()), f.report),
        };
        FleetRow {
            ct: item.request.ct.to_string(),
            node: item.node.clone(),
            gpus: item.request.gpus.to_string(),
            result,
            error_kind,
            duration_ms: ms,
            report,
        }
    }
}

/// Applies every item, at most `jobs` at a time, and returns one row per item in the items'
/// order. One container's failure does not stop the others.
pub async fn apply_all(items: Vec<FleetItem>, jobs: usize) -> Vec<FleetRow> {
    let sem = Arc::new(Semaphore::new(jobs.max(1)));
    let mut set = JoinSet::new();
    for (i, item) in items.iter().cloned().enumerate() {
        let sem = sem.clone();
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let t0 = Instant::now();
            let out = item.engine.apply(&item.request).await;
            let ms = t0.elapsed().as_millis() as u64;
            (i, FleetRow::from_outcome(&item, out, ms))
        });
    }
    let mut rows: Vec<Option<FleetRow>> = vec![None; items.len()];
    while let Some(joined) = set.join_next().await {
        if let Ok((i, row)) = joined {
            rows[i] = Some(row);
        }
    }
    // A task that panicked left no row: report it as an internal failure, never drop it.
    rows.into_iter()
        .zip(&items)
        .map(|(row, item)| {
            row.unwrap_or_else(|| {
                let mut report = Report::new(item.request.ct.as_str());
                report.error = Some(crate::report::ReportedError {
                    kind: ErrorKind::Internal,
                    message: "the task applying this container panicked".into(),
                });
                FleetRow {
                    ct: item.request.ct.to_string(),
                    node: item.node.clone(),
                    gpus: item.request.gpus.to_string(),
                    result: "failed",
                    error_kind: Some(ErrorKind::Internal),
                    duration_ms: 0,
                    report,
                }
            })
        })
        .collect()
}
