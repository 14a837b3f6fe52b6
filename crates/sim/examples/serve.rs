//! Run the simulator in-process for manual experiments:
//! `cargo run -p meshfleet-sim --example serve -- KUBECONFIG [CRDS_DIR] [EGRESS_IP] [SPEED]`.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let kc = args
        .first()
        .cloned()
        .unwrap_or_else(|| "/tmp/sim.kubeconfig".into());
    let mut cfg = meshfleet_sim::SimConfig::new("127.0.0.1:0".parse()?, kc.into());
    cfg.crds_dir = args.get(1).filter(|s| !s.is_empty()).map(Into::into);
    cfg.egress_ip = args
        .get(2)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse())
        .transpose()?;
    cfg.speed = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(10.0);
    let sim = meshfleet_sim::start(cfg).await?;
    eprintln!("listening on {}", sim.addr());
    tokio::signal::ctrl_c().await?;
    sim.shutdown().await?;
    Ok(())
}
