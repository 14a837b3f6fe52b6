//! Label and field selectors, as the API server parses them from query strings.

use serde_json::Value;

/// One label requirement.
#[derive(Debug, Clone, PartialEq)]
enum Req {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector (all requirements must hold).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(Vec<Req>);

fn split_top(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => {
                depth += 1;
                cur.push(c)
            }
            ')' => {
                depth -= 1;
                cur.push(c)
            }
            ',' if depth == 0 => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

fn set_values(s: &str) -> Option<Vec<String>> {
    let s = s.trim();
    let inner = s.strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

impl LabelSelector {
    /// Parse `a=b,c!=d,e in (x,y),f notin (z),g,!h`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for part in split_top(s) {
            let p = part.trim();
            if p.is_empty() {
                continue;
            }
            let words: Vec<&str> = p.splitn(2, ' ').collect();
            if words.len() == 2
                && (words[1].trim_start().starts_with("in ")
                    || words[1].trim_start().starts_with("in("))
            {
                let rest = words[1].trim_start().trim_start_matches("in");
                let vals =
                    set_values(rest).ok_or_else(|| format!("invalid label selector `{p}`"))?;
                reqs.push(Req::In(words[0].to_string(), vals));
            } else if words.len() == 2 && words[1].trim_start().starts_with("notin") {
                let rest = words[1].trim_start().trim_start_matches("notin");
                let vals =
                    set_values(rest).ok_or_else(|| format!("invalid label selector `{p}`"))?;
                reqs.push(Req::NotIn(words[0].to_string(), vals));
            } else if let Some((k, v)) = p.split_once("!=") {
                reqs.push(Req::Ne(k.trim().into(), v.trim().into()));
            } else if let Some((k, v)) = p.split_once("==") {
                reqs.push(Req::Eq(k.trim().into(), v.trim().into()));
            } else if let Some((k, v)) = p.split_once('=') {
                reqs.push(Req::Eq(k.trim().into(), v.trim().into()));
            } else if let Some(k) = p.strip_prefix('!') {
                reqs.push(Req::NotExists(k.trim().into()));
            } else if p.contains(' ') || p.contains('(') {
                return Err(format!("invalid label selector `{p}`"));
            } else {
                reqs.push(Req::Exists(p.into()));
            }
        }
        Ok(Self(reqs))
    }

    /// From a `matchLabels` map (as in `clusterSelector`).
    pub fn from_match_labels(m: &serde_json::Map<String, Value>) -> Self {
        Self(
            m.iter()
                .map(|(k, v)| Req::Eq(k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect(),
        )
    }

    /// Whether the object's labels satisfy the selector.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Req::Eq(k, v) => get(k) == Some(v.as_str()),
            Req::Ne(k, v) => get(k) != Some(v.as_str()),
            Req::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Req::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            Req::Exists(k) => get(k).is_some(),
            Req::NotExists(k) => get(k).is_none(),
        })
    }
}

/// A parsed field selector (`metadata.name=x,involvedObject.uid!=y`).
#[derive(Debug, Clone, Default)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    /// Parse.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for p in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if let Some((k, v)) = p.split_once("!=") {
                out.push((k.trim().to_string(), false, v.trim().to_string()));
            } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
                out.push((k.trim().to_string(), true, v.trim().to_string()));
            } else {
                return Err(format!(
                    "invalid field selector `{p}`: expected `field=value`"
                ));
            }
        }
        Ok(Self(out))
    }

    /// Whether the object satisfies the selector (missing fields compare as empty strings).
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(path, eq, want)| {
            let mut cur = Some(obj);
            for seg in path.split('.') {
                cur = cur.and_then(|c| c.get(seg));
            }
            let got = match cur {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(v) => v.to_string(),
            };
            (got == *want) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors() {
        let o = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
        for (s, want) in [
            ("a=1", true),
            ("a==1,b=2", true),
            ("a!=1", false),
            ("a in (1,3)", true),
            ("b notin (2)", false),
            ("c", false),
            ("!c", true),
        ] {
            assert_eq!(LabelSelector::parse(s).unwrap().matches(&o), want, "{s}");
        }
    }

    #[test]
    fn field_selectors() {
        let o = json!({"metadata": {"name": "x"}, "involvedObject": {"kind": "K"}});
        assert!(
            FieldSelector::parse("metadata.name=x,involvedObject.kind=K")
                .unwrap()
                .matches(&o)
        );
        assert!(
            !FieldSelector::parse("metadata.name!=x")
                .unwrap()
                .matches(&o)
        );
    }
}
