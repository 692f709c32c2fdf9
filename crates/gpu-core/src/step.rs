//! What every step runs in: the step context ([`Ctx`]) and the report being built ([`Run`]),
//! which times each step, emits its events and opens its tracing span.
//!
//! This module sits below the steps: the steps and the operations of [`Engine`](crate::Engine)
//! import it, it imports none of them.

use std::future::Future;
use std::time::Instant;

use exec_backend::{ContainerExec, CtRef, Host};

use crate::counting::Tally;
use crate::error::{chain, Error, Result};
use crate::facts::HostFacts;
use crate::inventory::{Inventory, ProcDevices};
use crate::report::{Event, EventSink, Report, ReportedError, StepName, StepReport, StepStatus};
use crate::settings::Settings;
use crate::target::Target;

/// What a step function sees: the host and the container (both counted), and where things go.
pub(crate) struct Ctx<'a> {
    pub host: &'a dyn Host,
    pub cts: &'a dyn ContainerExec,
    pub target: &'a Target,
    pub settings: &'a Settings,
    pub events: &'a EventSink,
    pub ct: &'a CtRef,
    /// What the run reads of the host once (or afresh, outside a run).
    pub facts: &'a HostFacts,
}

impl Ctx<'_> {
    /// The host's inventory (read once per run when the engine keeps its host's facts).
    pub async fn inventory(&self) -> Result<Inventory> {
        self.facts.inventory(self.host).await
    }

    /// The host's character-device table (likewise).
    pub async fn proc_devices(&self) -> Result<ProcDevices> {
        self.facts.proc_devices(self.host).await
    }
}

/// Why the container steps are skipped when a request stops after the config step.
pub(crate) const CONFIG_ONLY: &str = "config only: stopped after the config step";

/// The span around a step: log lines inside it carry the container and the step's name.
fn step_span(ct: &str, name: StepName) -> tracing::Span {
    tracing::info_span!(target: "gpu_core::step", "step", ct = %ct, step = name.as_str())
}

/// A report being built: times steps, emits events.
pub(crate) struct Run<'a> {
    pub report: Report,
    events: &'a EventSink,
    started: Instant,
}

/// An operation that failed, with the report of what ran before it failed.
///
/// It prints as its error (and its causes come from that error), so a cause chain printed
/// from a `Failure` shows each cause once.
#[derive(Debug)]
pub struct Failure {
    /// The steps that ran, the last one failed.
    pub report: Report,
    /// Why.
    pub error: Error,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

impl<'a> Run<'a> {
    pub(crate) fn new(ct: &CtRef, events: &'a EventSink) -> Run<'a> {
        Run {
            report: Report::new(ct.as_str()),
            events,
            started: Instant::now(),
        }
    }

    /// Runs one step: emits events, records its outcome. The future gives the step's value,
    /// status and one line of detail.
    pub async fn step<T>(
        &mut self,
        name: StepName,
        fut: impl Future<Output = Result<(T, StepStatus, String)>>,
    ) -> Result<T> {
        let ct = self.report.ct.clone();
        // Log lines of the step carry its name (the CLI's log file shows the span).
        let span = step_span(&ct, name);
        span.in_scope(|| {
            self.events.emit(Event::StepStarted {
                ct: ct.clone(),
                step: name,
            })
        });
        let t0 = Instant::now();
        let out = tracing::Instrument::instrument(fut, span.clone()).await;
        let duration_ms = t0.elapsed().as_millis() as u64;
        let (value, status, detail) = match out {
            Ok((v, status, detail)) => (Ok(v), status, detail),
            Err(e) => {
                let detail = chain(&e);
                (Err(e), StepStatus::Failed, detail)
            }
        };
        if status == StepStatus::Changed {
            self.report.changed = true;
        }
        self.record(StepReport {
            name,
            status,
            detail,
            duration_ms,
        });
        value
    }

    /// Records a step that did not run through [`Run::step`] (skipped ones).
    pub fn record(&mut self, report: StepReport) {
        let ct = &self.report.ct;
        step_span(ct, report.name).in_scope(|| {
            self.events.emit(Event::StepFinished {
                ct: ct.clone(),
                report: report.clone(),
            })
        });
        self.report.steps.push(report);
    }

    /// Records a skipped step.
    pub fn skip(&mut self, name: StepName, why: impl Into<String>) {
        self.record(StepReport {
            name,
            status: StepStatus::Skipped,
            detail: why.into(),
            duration_ms: 0,
        });
    }

    /// Ends the run: the counters and the time go into the report, and a failure keeps it.
    pub(crate) fn finish(
        self,
        tally: &Tally,
        result: Result<()>,
    ) -> std::result::Result<Report, Failure> {
        self.finish_with(tally, result).map(|((), report)| report)
    }

    /// Like [`Run::finish`] for a run that also gives a value.
    pub(crate) fn finish_with<T>(
        mut self,
        tally: &Tally,
        result: Result<T>,
    ) -> std::result::Result<(T, Report), Failure> {
        self.report.counters = tally.counters();
        self.report.duration_ms = self.started.elapsed().as_millis() as u64;
        match result {
            Ok(value) => Ok((value, self.report)),
            Err(error) => {
                self.report.error = Some(ReportedError {
                    kind: error.kind(),
                    message: chain(&error),
                });
                Err(Failure {
                    report: self.report,
                    error,
                })
            }
        }
    }
}
