mod common;

#[test]
#[ignore]
fn dump() {
    let text = std::env::var("DUMP_FLEET")
        .map(|p| std::fs::read_to_string(p).unwrap())
        .unwrap_or_else(|_| common::example_fleet_text());
    let fleet = common::parse(&text);
    let plan = common::plan(&fleet);
    let r = meshfleet_render::render(&fleet, &plan).unwrap();
    for f in &r.files {
        println!("=== {}\n{}", f.path, f.contents);
    }
}
