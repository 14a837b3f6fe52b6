//! Progress as data: the engine reports what it does as [`Event`]s to a callback the caller
//! gives it; the CLI turns them into spinners or lines, a test records them.

use std::sync::Mutex;

/// Something the engine did or saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A cluster moved to another step, or its step's detail changed.
    Step {
        /// Cluster name.
        cluster: String,
        /// What it is doing, e.g. `waiting for the control plane: …`.
        message: String,
    },
    /// A cluster finished, well or badly.
    Finished {
        /// Cluster name.
        cluster: String,
        /// Whether it converged.
        ok: bool,
        /// The last word on it, e.g. `ready, meshed with 2 peers`.
        message: String,
    },
    /// A fleet-wide warning (e.g. a mesh check that does not stop the run).
    Warning(String),
    /// A fleet-wide note (e.g. a cluster deleted by `down`).
    Info(String),
}

/// The sink shared by the engine's tasks: one callback behind a lock, so events from
/// concurrent clusters arrive one at a time.
pub struct Progress {
    sink: Mutex<Sink>,
}

/// The caller's callback.
type Sink = Box<dyn FnMut(&Event) + Send>;

impl Progress {
    /// Wrap a callback.
    pub fn new(sink: impl FnMut(&Event) + Send + 'static) -> Self {
        Self {
            sink: Mutex::new(Box::new(sink)),
        }
    }

    /// A callback that drops everything.
    pub fn silent() -> Self {
        Self::new(|_| {})
    }

    /// Report one event.
    pub fn emit(&self, e: Event) {
        let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        sink(&e);
    }

    /// [`Event::Step`].
    pub fn step(&self, cluster: &str, message: &str) {
        self.emit(Event::Step {
            cluster: cluster.to_string(),
            message: message.to_string(),
        });
    }

    /// [`Event::Finished`].
    pub fn finish(&self, cluster: &str, ok: bool, message: &str) {
        self.emit(Event::Finished {
            cluster: cluster.to_string(),
            ok,
            message: message.to_string(),
        });
    }

    /// [`Event::Warning`].
    pub fn warn(&self, message: &str) {
        self.emit(Event::Warning(message.to_string()));
    }

    /// [`Event::Info`].
    pub fn info(&self, message: &str) {
        self.emit(Event::Info(message.to_string()));
    }
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress")
    }
}
