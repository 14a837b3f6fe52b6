fn main() {
    println!(
        "{}",
        serde_json::to_string_pretty(&meshfleet_spec::json_schema()).unwrap()
    );
}
