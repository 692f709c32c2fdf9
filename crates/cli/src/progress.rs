//! Progress on a terminal: spinners for running steps and bars for downloads, drawn on stderr
//! from the engine's events. Off unless both stdout and stderr are terminals, and off with
//! `--json` or `-q`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gpu_core::{Event, StepStatus};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether progress is drawn.
pub fn enabled(json: bool, quiet: u8, stdout_tty: bool, stderr_tty: bool) -> bool {
    !json && quiet == 0 && stdout_tty && stderr_tty
}

/// The bars of one run. Cheap to share; events may come from any task.
#[derive(Clone)]
pub struct Progress {
    multi: MultiProgress,
    bars: Arc<Mutex<HashMap<(String, String), ProgressBar>>>,
    tick: bool,
}

fn who(ct: &str) -> String {
    if ct.is_empty() {
        "host".to_owned()
    } else {
        format!("CT {ct}")
    }
}

impl Progress {
    /// Progress drawn on stderr.
    pub fn stderr() -> Progress {
        Progress::with_target(ProgressDrawTarget::stderr(), true)
    }

    /// Progress drawn to `target` (tests use a hidden one); `tick` animates spinners.
    pub fn with_target(target: ProgressDrawTarget, tick: bool) -> Progress {
        Progress {
            multi: MultiProgress::with_draw_target(target),
            bars: Arc::new(Mutex::new(HashMap::new())),
            tick,
        }
    }

    /// The bars' container, to print log lines above them.
    pub fn multi(&self) -> &MultiProgress {
        &self.multi
    }

    fn spinner(&self, msg: String) -> ProgressBar {
        let pb = self.multi.add(ProgressBar::new_spinner());
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
            pb.set_style(style);
        }
        pb.set_message(msg);
        if self.tick {
            pb.enable_steady_tick(Duration::from_millis(120));
        }
        pb
    }

    fn transfer(&self, msg: String, total: Option<u64>, bytes: bool) -> ProgressBar {
        let (pb, template) = match (total, bytes) {
            (Some(t), true) => (
                ProgressBar::new(t),
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ),
            (Some(t), false) => (ProgressBar::new(t), "{msg} [{bar:30}] {pos}/{len}"),
            (None, true) => (ProgressBar::new_spinner(), "{spinner} {msg} {bytes}"),
            (None, false) => (ProgressBar::new_spinner(), "{spinner} {msg} {pos}"),
        };
        let pb = self.multi.add(pb);
        if let Ok(style) = ProgressStyle::with_template(template) {
            pb.set_style(style.progress_chars("=> "));
        }
        pb.set_message(msg);
        if self.tick {
            pb.enable_steady_tick(Duration::from_millis(250));
        }
        pb
    }

    /// Shows one event.
    pub fn handle(&self, e: &Event) {
        let Ok(mut bars) = self.bars.lock() else {
            return;
        };
        match e {
            Event::StepStarted { ct, step } => {
                let key = (ct.clone(), step.as_str().to_owned());
                let pb = self.spinner(format!("{} {}", who(ct), step.as_str()));
                if let Some(old) = bars.insert(key, pb) {
                    old.finish_and_clear();
                }
            }
            Event::StepFinished { ct, report } => {
                if let Some(pb) = bars.remove(&(ct.clone(), report.name.as_str().to_owned())) {
                    pb.finish_and_clear();
                }
                // A failed or finished step ends the transfers it started (downloads are
                // host-wide: their ct is empty).
                if report.status != StepStatus::Skipped {
                    let done: Vec<_> = bars
                        .keys()
                        .filter(|(c, w)| {
                            (c == ct || c.is_empty()) && w.starts_with(TRANSFER_PREFIX)
                        })
                        .cloned()
                        .collect();
                    for k in done {
                        if let Some(pb) = bars.remove(&k) {
                            pb.finish_and_clear();
                        }
                    }
                }
            }
            Event::Progress {
                ct,
                what,
                done,
                total,
            } => {
                let key = (ct.clone(), format!("{TRANSFER_PREFIX}{what}"));
                let pb = bars.entry(key.clone()).or_insert_with(|| {
                    let bytes = what.starts_with("download");
                    self.transfer(format!("{} {what}", who(ct)), *total, bytes)
                });
                if let Some(t) = total {
                    if pb.length() != Some(*t) {
                        pb.set_length(*t);
                    }
                }
                pb.set_position(*done);
                if total.is_some_and(|t| *done >= t) {
                    pb.finish_and_clear();
                    bars.remove(&key);
                }
            }
            _ => {}
        }
    }

    /// Removes every bar (at the end of a run, before the report is printed).
    pub fn clear(&self) {
        if let Ok(mut bars) = self.bars.lock() {
            for (_, pb) in bars.drain() {
                pb.finish_and_clear();
            }
        }
        let _ = self.multi.clear();
    }

    /// The bars now shown, as `(ct, what, position, length)`, sorted (for tests).
    #[cfg(test)]
    fn shown(&self) -> Vec<(String, String, u64, Option<u64>)> {
        let bars = self.bars.lock().unwrap();
        let mut v: Vec<_> = bars
            .iter()
            .map(|((c, w), pb)| (c.clone(), w.clone(), pb.position(), pb.length()))
            .collect();
        v.sort();
        v
    }
}

/// Marks transfer bars apart from step spinners in the map.
const TRANSFER_PREFIX: &str = "progress:";

#[cfg(test)]
mod tests {
    use gpu_core::{StepName, StepReport};

    use super::*;

    fn finished(ct: &str, name: StepName, status: StepStatus) -> Event {
        Event::StepFinished {
            ct: ct.into(),
            report: StepReport {
                name,
                status,
                detail: String::new(),
                duration_ms: 1,
            },
        }
    }

    #[test]
    fn only_on_a_terminal_without_json_or_quiet() {
        assert!(enabled(false, 0, true, true));
        assert!(!enabled(true, 0, true, true));
        assert!(!enabled(false, 1, true, true));
        assert!(!enabled(false, 0, false, true));
        assert!(!enabled(false, 0, true, false));
    }

    #[test]
    fn steps_and_downloads() {
        let p = Progress::with_target(ProgressDrawTarget::hidden(), false);
        p.handle(&Event::StepStarted {
            ct: "101".into(),
            step: StepName::Userspace,
        });
        assert_eq!(p.shown(), vec![("101".into(), "userspace".into(), 0, None)]);
        let what = "download NVIDIA-Linux-x86_64-580.159.04.run".to_owned();
        for done in [0, 1000, 5000] {
            p.handle(&Event::Progress {
                ct: String::new(),
                what: what.clone(),
                done,
                total: Some(10_000),
            });
        }
        assert_eq!(
            p.shown(),
            vec![
                (
                    String::new(),
                    format!("progress:{what}"),
                    5000,
                    Some(10_000)
                ),
                ("101".into(), "userspace".into(), 0, None),
            ]
        );
        // The last chunk completes the bar and takes it away.
        p.handle(&Event::Progress {
            ct: String::new(),
            what: what.clone(),
            done: 10_000,
            total: Some(10_000),
        });
        assert_eq!(p.shown().len(), 1);
        // A download of unknown size ends with its step.
        p.handle(&Event::Progress {
            ct: String::new(),
            what: "download x.run".into(),
            done: 7,
            total: None,
        });
        assert_eq!(p.shown().len(), 2);
        p.handle(&finished("101", StepName::Userspace, StepStatus::Failed));
        assert!(p.shown().is_empty());
    }

    #[test]
    fn skipped_steps_do_not_end_transfers_and_clear_ends_all() {
        let p = Progress::with_target(ProgressDrawTarget::hidden(), false);
        p.handle(&Event::Progress {
            ct: "101".into(),
            what: "install".into(),
            done: 1,
            total: Some(3),
        });
        p.handle(&finished("101", StepName::Cuda, StepStatus::Skipped));
        assert_eq!(p.shown().len(), 1);
        p.handle(&Event::StepStarted {
            ct: "102".into(),
            step: StepName::Config,
        });
        p.clear();
        assert!(p.shown().is_empty());
    }
}
