//! A reader for the Prometheus text exposition format (version 0.0.4), enough for the gauges
//! Cilium agents export: `name{label="value",…} value [timestamp]` lines, `#` comments, escaped
//! label values. Malformed lines are skipped, as scrapers skip what they cannot use.

use std::collections::BTreeMap;

/// One sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Value (`NaN`, `+Inf`, `-Inf` allowed).
    pub value: f64,
}

impl Sample {
    /// A label's value, empty when absent (Prometheus treats the two alike).
    pub fn label(&self, k: &str) -> &str {
        self.labels.get(k).map(String::as_str).unwrap_or("")
    }
}

/// Every sample of `text` whose metric name is `name`.
pub fn samples<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = Sample> + 'a {
    text.lines()
        .filter_map(parse_line)
        .filter(move |s| s.name == name)
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        loop {
            while chars
                .peek()
                .is_some_and(|(_, c)| *c == ',' || c.is_whitespace())
            {
                chars.next();
            }
            let (i, c) = chars.next()?;
            if c == '}' {
                rest = &body[i + 1..];
                break;
            }
            let mut key = String::from(c);
            loop {
                let (_, c) = chars.next()?;
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '"' => break,
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    c => value.push(c),
                }
            }
            labels.insert(key.trim().to_string(), value);
        }
    }
    let value = match rest.split_whitespace().next()? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cilium_clustermesh_gauges() {
        let text = r#"# HELP cilium_clustermesh_remote_cluster_readiness_status The readiness status of the remote cluster
# TYPE cilium_clustermesh_remote_cluster_readiness_status gauge
cilium_clustermesh_remote_cluster_readiness_status{source_cluster="a",source_node_name="n-1",target_cluster="b"} 1
cilium_clustermesh_remote_cluster_readiness_status{source_cluster="a",source_node_name="n-1",target_cluster="c"} 0 1700000000000
cilium_clustermesh_remote_cluster_failures{source_cluster="a", source_node_name="n-1",target_cluster="c",} 4
cilium_clustermesh_remote_clusters{source_cluster="a",source_node_name="n-1"} 2
weird{k="q\"uote\\d\nx"} +Inf
broken{k="v" 1
go_goroutines 57
"#;
        let r: Vec<Sample> =
            samples(text, "cilium_clustermesh_remote_cluster_readiness_status").collect();
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].label("target_cluster"), r[0].value), ("b", 1.0));
        assert_eq!(
            (
                r[1].label("target_cluster"),
                r[1].value,
                r[1].label("source_node_name")
            ),
            ("c", 0.0, "n-1")
        );
        let f: Vec<Sample> = samples(text, "cilium_clustermesh_remote_cluster_failures").collect();
        assert_eq!((f[0].label("target_cluster"), f[0].value), ("c", 4.0));
        let w: Vec<Sample> = samples(text, "weird").collect();
        assert_eq!(w[0].label("k"), "q\"uote\\d\nx");
        assert!(w[0].value.is_infinite());
        assert_eq!(samples(text, "broken").count(), 0);
        assert_eq!(samples(text, "go_goroutines").next().unwrap().value, 57.0);
        assert_eq!(samples("", "x").count(), 0);
        assert_eq!(samples("404 page not found", "404").count(), 0);
    }
}
