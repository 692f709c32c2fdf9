//! The one fake [`ContainerExec`]: a container whose commands a test scripts.

use std::collections::BTreeSet;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use exec_backend::{Cmd, ContainerExec, CtRef, CtState, ExecError, Output, Stopped};

use crate::calls::{argv_line, CallLog};

/// What a scripted container does: implemented by the test's model of what is inside (its
/// installed software, its device nodes), which [`CtModel`] derefs to.
pub trait CtScript: Send + Sized + 'static {
    /// What `cmd` run inside prints and how it exits; the model's run state is in `ct.state`
    /// (a real backend cannot exec in a stopped container: say what the test expects then).
    fn exec(ct: &mut CtModel<Self>, cmd: &Cmd) -> Result<Output, ExecError>;

    /// The container has just started (`ct.state` is `Running`).
    fn started(_ct: &mut CtModel<Self>) {}

    /// The container has just stopped (`ct.state` is `Stopped`).
    fn stopped(_ct: &mut CtModel<Self>) {}
}

/// The state of a scripted container: what every container has, and the test's model `S`
/// (reached through `Deref`).
#[derive(Debug)]
pub struct CtModel<S> {
    /// Running, stopped.
    pub state: CtState,
    /// The host files pushed in, in order.
    pub pushed: Vec<PathBuf>,
    /// The paths inside that pushed files went to and the script has not removed.
    pub files: BTreeSet<String>,
    /// `start` never returns (a container that does not come up).
    pub start_hangs: bool,
    /// `stop` reports [`Stopped::Killed`] (a container that did not shut down in time).
    pub stop_kills: bool,
    /// The test's model.
    pub script: S,
}

impl<S> Deref for CtModel<S> {
    type Target = S;

    fn deref(&self) -> &S {
        &self.script
    }
}

impl<S> DerefMut for CtModel<S> {
    fn deref_mut(&mut self) -> &mut S {
        &mut self.script
    }
}

/// A stand-in for a container reached through [`ContainerExec`] (pct, lxc-attach, SSH).
///
/// What it keeps of the real contract: `state` reports the run state, `stop` and `start` change
/// it (`start` may hang, as a container that never reaches RUNNING; `stop` says whether it
/// was already stopped, shut down cleanly, or killed when [`CtModel::stop_kills`] is set),
/// `push_file` puts a file
/// in (recorded in [`CtModel::pushed`] and [`CtModel::files`]), and with
/// [`ScriptedCt::named`] any other container is `CtNotFound`. What `exec` answers is the
/// test's [`CtScript`]. Every call is recorded in a [`CallLog`] (`ct exec sh -c <script>`,
/// `ct start`).
pub struct ScriptedCt<S> {
    only: Option<String>,
    model: Mutex<CtModel<S>>,
    calls: CallLog,
}

impl<S: CtScript> ScriptedCt<S> {
    /// A container in `state` whose commands `script` answers.
    pub fn new(state: CtState, script: S) -> ScriptedCt<S> {
        ScriptedCt {
            only: None,
            model: Mutex::new(CtModel {
                state,
                pushed: Vec::new(),
                files: BTreeSet::new(),
                start_hangs: false,
                stop_kills: false,
                script,
            }),
            calls: CallLog::new(),
        }
    }

    /// Only the container `ct` exists; calls for any other are `CtNotFound`.
    pub fn named(mut self, ct: &str) -> ScriptedCt<S> {
        self.only = Some(ct.to_owned());
        self
    }

    /// Records the calls in `calls` (shared with an [`FsHost`](crate::FsHost) to see their
    /// order).
    pub fn with_calls(mut self, calls: CallLog) -> ScriptedCt<S> {
        self.calls = calls;
        self
    }

    /// Reads or changes the state.
    pub fn with<R>(&self, f: impl FnOnce(&mut CtModel<S>) -> R) -> R {
        f(&mut self.model.lock().unwrap())
    }

    /// The calls so far.
    pub fn calls(&self) -> &CallLog {
        &self.calls
    }

    /// `CtNotFound` for a container other than the named one; else records `call`.
    fn enter(&self, ct: &CtRef, call: impl FnOnce() -> String) -> Result<(), ExecError> {
        if self.only.as_deref().is_some_and(|only| only != ct.as_str()) {
            return Err(ExecError::CtNotFound {
                target: "scripted container".into(),
                ct: ct.to_string(),
            });
        }
        self.calls.push(call());
        Ok(())
    }
}

#[async_trait]
impl<S: CtScript> ContainerExec for ScriptedCt<S> {
    async fn exec(&self, ct: &CtRef, cmd: &Cmd) -> Result<Output, ExecError> {
        self.enter(ct, || format!("ct exec {}", argv_line(cmd)))?;
        S::exec(&mut self.model.lock().unwrap(), cmd)
    }

    async fn push_file(
        &self,
        ct: &CtRef,
        src: &Path,
        dest: &Path,
        _mode: u32,
    ) -> Result<(), ExecError> {
        self.enter(ct, || {
            format!("ct push_file {} {}", src.display(), dest.display())
        })?;
        let mut m = self.model.lock().unwrap();
        m.pushed.push(src.to_owned());
        m.files.insert(dest.display().to_string());
        Ok(())
    }

    async fn state(&self, ct: &CtRef) -> Result<CtState, ExecError> {
        self.enter(ct, || "ct state".into())?;
        Ok(self.model.lock().unwrap().state.clone())
    }

    async fn start(&self, ct: &CtRef) -> Result<(), ExecError> {
        self.enter(ct, || "ct start".into())?;
        let hangs = self.model.lock().unwrap().start_hangs;
        if hangs {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        let mut m = self.model.lock().unwrap();
        m.state = CtState::Running;
        S::started(&mut m);
        Ok(())
    }

    async fn stop(&self, ct: &CtRef, _grace: Duration) -> Result<Stopped, ExecError> {
        self.enter(ct, || "ct stop".into())?;
        let mut m = self.model.lock().unwrap();
        if m.state == CtState::Stopped {
            return Ok(Stopped::Already);
        }
        m.state = CtState::Stopped;
        S::stopped(&mut m);
        Ok(if m.stop_kills {
            Stopped::Killed
        } else {
            Stopped::Clean
        })
    }
}
