//! A fleet made ready for the engine (parsed, planned, rendered, with the options `up` would
//! get from the CLI), and a progress sink that records every event: what each engine test
//! starts from.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use meshfleet_lifecycle::up::{self, UpOptions, UpReport};
use meshfleet_lifecycle::{Error, Event, Progress};

use super::Fake;

/// A fleet with its plan, rendered objects and `up` options.
pub struct Setup {
    /// The parsed fleet.
    pub fleet: meshfleet_spec::Fleet,
    /// Its plan (no lock).
    pub plan: meshfleet_plan::Plan,
    /// Its objects.
    pub rendered: meshfleet_render::Rendered,
    /// The options the CLI would pass (fleet `acme`, 5 s timeout).
    pub opts: UpOptions,
}

/// Parses, plans and renders `text`; `concurrency` clusters converge at once.
pub fn setup(text: &str, concurrency: usize) -> Setup {
    let fleet = meshfleet_spec::parse(text).expect("valid fleet").fleet;
    let plan = meshfleet_plan::plan(&fleet, None).expect("plannable fleet");
    let rendered = meshfleet_render::render(&fleet, &plan).expect("renderable fleet");
    let opts = UpOptions {
        fleet: "acme".into(),
        timeout: Duration::from_secs(5),
        concurrency,
        mesh: fleet.spec.mesh.enabled,
        ipsec: false,
        labels: [("meshfleet.io/fleet".to_string(), "acme".to_string())].into(),
        mesh_ids: plan
            .clusters
            .iter()
            .map(|c| (c.name.clone(), u32::from(c.mesh_id)))
            .collect(),
        max_connected: 255,
        peers: plan.mesh_peers.clone(),
    };
    Setup {
        fleet,
        plan,
        rendered,
        opts,
    }
}

impl Setup {
    /// `up` with `opts` against the fake.
    pub async fn up(
        &self,
        mgmt: &Fake,
        opts: UpOptions,
        progress: Arc<Progress>,
    ) -> Result<UpReport, Error> {
        up::run(
            mgmt,
            &self.fleet,
            &self.plan,
            &self.rendered,
            opts,
            progress,
        )
        .await
    }

    /// `up` with the fixture's options; the result and every event it reported.
    pub async fn up_recorded(&self, mgmt: &Fake) -> (Result<UpReport, Error>, Vec<Event>) {
        let (progress, events) = recorder();
        let r = self.up(mgmt, self.opts.clone(), progress).await;
        let ev = events.lock().unwrap().clone();
        (r, ev)
    }
}

/// A progress sink that keeps every event.
pub fn recorder() -> (Arc<Progress>, Arc<Mutex<Vec<Event>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let e = events.clone();
    (
        Arc::new(Progress::new(move |ev| e.lock().unwrap().push(ev.clone()))),
        events,
    )
}
