//! Plan a fleet file and print the plan as JSON and the lock as YAML (for measuring and poking).
//!
//! `cargo run -p meshfleet-plan --release --example plan_file -- FLEET.yaml [LOCK]`

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: plan_file FLEET.yaml [LOCK]");
        return ExitCode::from(2);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot read `{path}`: {e}");
            return ExitCode::from(2);
        }
    };
    let loaded = match meshfleet_spec::parse(&text) {
        Ok(l) => l,
        Err(r) => {
            for d in &r.errors {
                eprintln!("{d}");
            }
            return ExitCode::from(2);
        }
    };
    let lock = match args.next().map(std::fs::read_to_string) {
        Some(Ok(t)) => match meshfleet_plan::Lock::parse(&t) {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("bad lock: {e}");
                return ExitCode::from(2);
            }
        },
        Some(Err(e)) => {
            eprintln!("cannot read lock: {e}");
            return ExitCode::from(2);
        }
        None => None,
    };
    match meshfleet_plan::plan(&loaded.fleet, lock.as_ref()) {
        Ok(p) => {
            for w in &p.warnings {
                eprintln!("{w}");
            }
            match (serde_json::to_string_pretty(&p), p.lock.to_yaml()) {
                (Ok(json), Ok(lock)) => {
                    println!("{json}");
                    eprintln!("{lock}");
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(1),
            }
        }
        Err(r) => {
            for d in &r.errors {
                eprintln!("{d}");
            }
            ExitCode::from(2)
        }
    }
}
