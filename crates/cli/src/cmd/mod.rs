//! One module per command: each turns its arguments into options, calls a library, and prints.

pub mod aws;
pub mod common;
pub mod diff;
pub mod doctor;
pub mod down;
pub mod gcp;
pub mod init;
pub mod kubeconfig;
pub mod mesh;
pub mod net;
pub mod outage;
pub mod plan;
pub mod render;
pub mod sim;
pub mod status;
pub mod up;
pub mod validate;

use crate::cli::Command;
use crate::ctx::{Ctx, Exit};

/// Dispatch a parsed command.
pub fn run(ctx: &Ctx, command: Command) -> anyhow::Result<Exit> {
    match command {
        Command::Init(a) => init::run(ctx, a),
        Command::Validate(a) => validate::run(ctx, a),
        Command::Plan(a) => plan::run(ctx, a),
        Command::Render(a) => render::run(ctx, a),
        Command::Up(a) => up::run(ctx, a),
        Command::Status(a) => status::run(ctx, a),
        Command::Down(a) => down::run(ctx, a),
        Command::Kubeconfig(a) => kubeconfig::run(ctx, a),
        Command::Diff(a) => diff::run(ctx, a),
        Command::Sim(a) => sim::run(ctx, a),
        Command::Mesh(a) => mesh::run(ctx, a),
        Command::Gcp(a) => gcp::run(ctx, a),
        Command::Aws(a) => aws::run(ctx, a),
        Command::Net(a) => net::run(ctx, a),
        Command::Doctor(a) => doctor::run(ctx, a),
    }
}
