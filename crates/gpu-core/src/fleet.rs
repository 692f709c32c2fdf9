//! Many containers at once: apply a request to each, in parallel with a bound, and gather one
//! row per container.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::engine::Engine;
use crate::error::ErrorKind;
use crate::report::Report;
use crate::request::Request;
use crate::step::Failure;

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
    /// `unchanged`, `changed`, `skipped` or `failed`.
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

impl FleetRow {
    /// A row for a container that failed before its apply could start (its node cannot be
    /// reached, its assignment cannot be derived, ...).
    pub fn failed(ct: &str, node: &str, gpus: &str, error: &crate::error::Error) -> FleetRow {
        let mut report = Report::new(ct);
        report.error = Some(crate::report::ReportedError {
            kind: error.kind(),
            message: crate::error::chain(error),
        });
        FleetRow {
            ct: ct.to_owned(),
            node: node.to_owned(),
            gpus: gpus.to_owned(),
            result: "failed",
            error_kind: Some(error.kind()),
            duration_ms: 0,
            report,
        }
    }
}

impl FleetRow {
    /// A row for a container that was looked at and needed no run (`sync` of a container
    /// without NVIDIA entries).
    pub fn skipped(ct: &str, node: &str, gpus: &str) -> FleetRow {
        FleetRow {
            ct: ct.to_owned(),
            node: node.to_owned(),
            gpus: gpus.to_owned(),
            result: "skipped",
            error_kind: None,
            duration_ms: 0,
            report: Report::new(ct),
        }
    }
}

/// Runs `f` on every item, at most `jobs` at a time (at least one), and returns the outputs
/// in the items' order. An item whose task panicked gives `None`; the others still run.
pub async fn run_bounded<I, T, F, Fut>(items: Vec<I>, jobs: usize, f: F) -> Vec<Option<T>>
where
    I: Send + 'static,
    T: Send + 'static,
    F: Fn(I) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let sem = Arc::new(Semaphore::new(jobs.max(1)));
    let f = Arc::new(f);
    let n = items.len();
    let mut set = JoinSet::new();
    for (i, item) in items.into_iter().enumerate() {
        let sem = sem.clone();
        let f = f.clone();
        set.spawn(async move {
            // The semaphore is never closed, so acquiring only waits.
            let _permit = sem.acquire_owned().await;
            (i, f(item).await)
        });
    }
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        if let Ok((i, v)) = joined {
            out[i] = Some(v);
        }
    }
    out
}

/// Applies every item, at most `jobs` at a time, and returns one row per item in the items'
/// order. One container's failure does not stop the others. Items on one node should share
/// one engine (clones): the runfile is then downloaded once per node.
pub async fn apply_all(items: Vec<FleetItem>, jobs: usize) -> Vec<FleetRow> {
    let outs = run_bounded(items.clone(), jobs, |item: FleetItem| async move {
        let t0 = Instant::now();
        let out = item.engine.apply(&item.request).await;
        let ms = t0.elapsed().as_millis() as u64;
        FleetRow::from_outcome(&item, out, ms)
    })
    .await;
    // A task that panicked left no row: report it as an internal failure, never drop it.
    outs.into_iter()
        .zip(&items)
        .map(|(row, item)| {
            row.unwrap_or_else(|| {
                FleetRow::failed(
                    item.request.ct.as_str(),
                    &item.node,
                    &item.request.gpus.to_string(),
                    &crate::error::Error::Internal {
                        what: "the task applying this container panicked".into(),
                    },
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn bounded_keeps_order_and_the_bound() {
        let live = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (l, p) = (live.clone(), peak.clone());
        let out = run_bounded((0..20u64).collect(), 3, move |i| {
            let (l, p) = (l.clone(), p.clone());
            async move {
                let now = l.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(5 * (20 - i))).await;
                l.fetch_sub(1, Ordering::SeqCst);
                i * 2
            }
        })
        .await;
        assert_eq!(out, (0..20u64).map(|i| Some(i * 2)).collect::<Vec<_>>());
        assert!(peak.load(Ordering::SeqCst) <= 3);
        assert!(peak.load(Ordering::SeqCst) >= 2, "it ran in parallel");
    }

    #[tokio::test]
    async fn a_panicking_task_gives_none_and_the_others_run() {
        let out = run_bounded(vec![1u32, 2, 3], 0, |i| async move {
            if i == 2 {
                panic!("boom");
            }
            i
        })
        .await;
        assert_eq!(out, vec![Some(1), None, Some(3)]);
    }
}
