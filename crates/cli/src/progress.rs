//! Progress on stderr: a live line per cluster on a terminal, plain lines otherwise. The
//! lifecycle engine reports [`Event`]s; this turns them into what people see.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use meshfleet_lifecycle::Event;

/// Where progress goes.
pub enum Progress {
    /// A spinner per cluster.
    Live {
        multi: MultiProgress,
        bars: Mutex<BTreeMap<String, ProgressBar>>,
    },
    /// One line per change of step (logs, CI, pipes).
    Lines {
        last: Mutex<BTreeMap<String, String>>,
    },
    /// Nothing (`--quiet`).
    Quiet,
}

impl Progress {
    /// Live when stderr is a terminal, plain lines otherwise, nothing when quiet.
    pub fn new(quiet: bool, clusters: &[String]) -> Self {
        if quiet {
            return Self::Quiet;
        }
        if !std::io::stderr().is_terminal() {
            return Self::Lines {
                last: Mutex::default(),
            };
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let width = clusters.iter().map(String::len).max().unwrap_or(8);
        let style = ProgressStyle::with_template(&format!(
            "{{spinner}} {{prefix:<{width}}}  {{elapsed:>4}}  {{msg}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let mut bars = BTreeMap::new();
        for c in clusters {
            let pb = multi.add(ProgressBar::new_spinner());
            pb.set_style(style.clone());
            pb.set_prefix(c.clone());
            pb.set_message("waiting");
            pb.enable_steady_tick(Duration::from_millis(120));
            bars.insert(c.clone(), pb);
        }
        Self::Live {
            multi,
            bars: Mutex::new(bars),
        }
    }

    /// A cluster moved to another step (or its step's detail changed).
    pub fn step(&self, cluster: &str, msg: &str) {
        match self {
            Self::Live { bars, .. } => {
                if let Some(pb) = bars.lock().unwrap_or_else(|e| e.into_inner()).get(cluster) {
                    pb.set_message(msg.to_string());
                }
            }
            Self::Lines { last } => {
                let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
                if last.get(cluster).map(String::as_str) != Some(msg) {
                    last.insert(cluster.to_string(), msg.to_string());
                    eprintln!("{cluster}: {msg}");
                }
            }
            Self::Quiet => {}
        }
    }

    /// A cluster finished (well or badly).
    pub fn finish(&self, cluster: &str, ok: bool, msg: &str) {
        let mark = if ok { "✓" } else { "✗" };
        match self {
            Self::Live { bars, .. } => {
                if let Some(pb) = bars.lock().unwrap_or_else(|e| e.into_inner()).get(cluster) {
                    pb.finish_with_message(format!("{mark} {msg}"));
                }
            }
            Self::Lines { .. } => eprintln!("{cluster}: {mark} {msg}"),
            Self::Quiet => {}
        }
    }

    /// A fleet-wide line.
    pub fn line(&self, msg: &str) {
        match self {
            Self::Live { multi, .. } => {
                let _ = multi.println(msg);
            }
            Self::Lines { .. } => eprintln!("{msg}"),
            Self::Quiet => {}
        }
    }

    /// Show one engine event.
    pub fn show(&self, e: &Event) {
        match e {
            Event::Step { cluster, message } => self.step(cluster, message),
            Event::Finished {
                cluster,
                ok,
                message,
            } => self.finish(cluster, *ok, message),
            Event::Warning(m) => self.line(&format!("warning: {m}")),
            Event::Info(m) => self.line(m),
        }
    }

    /// Stop every spinner still running (on the way out).
    pub fn clear(&self) {
        if let Self::Live { bars, .. } = self {
            for pb in bars.lock().unwrap_or_else(|e| e.into_inner()).values() {
                if !pb.is_finished() {
                    pb.abandon();
                }
            }
        }
    }
}
