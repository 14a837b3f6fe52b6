//! Arbitrary input never panics the parser or the validator: it either validates or reports.

use meshfleet_spec::parse;
use proptest::prelude::*;

const EXAMPLE: &str = include_str!("../../../examples/fleet.yaml");

fn yaml_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("~".to_owned()),
        any::<i64>().prop_map(|i| i.to_string()),
        "[a-z0-9./:-]{0,12}",
        Just("true".to_owned()),
        Just("10.0.0.0/8".to_owned()),
        Just("v1.35.4".to_owned()),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec(("[a-zA-Z]{1,8}", inner), 0..4).prop_map(|kv| format!(
                "{{{}}}",
                kv.into_iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(s in "\\PC{0,200}") {
        let _ = parse(&s);
    }

    #[test]
    fn random_yaml_documents_never_panic(v in yaml_value()) {
        let _ = parse(&v);
        let _ = parse(&format!("apiVersion: meshfleet.io/v1alpha1\nkind: Fleet\nmetadata: {{ name: x }}\nspec: {v}\n"));
    }

    /// Replace one line of the valid example with random text: every outcome is a result, and an
    /// error always carries a position.
    #[test]
    fn mutated_example_never_panics(line in 0usize..70, junk in "[ a-zA-Z0-9:{}\\[\\],./#-]{0,30}") {
        let mut lines: Vec<&str> = EXAMPLE.lines().collect();
        if line < lines.len() {
            lines[line] = &junk;
        }
        let text = lines.join("\n");
        if let Err(report) = parse(&text) {
            prop_assert!(!report.errors.is_empty());
            for d in &report.errors {
                prop_assert!(d.position.is_some(), "unlocated: {:?}", d);
            }
        }
    }
}
