//! Decoding the Kubernetes protobuf envelope for the few built-in kinds kubectl's generator
//! commands send that way (`kubectl create namespace|secret|configmap …`). Everything else is
//! answered 415, which kubectl reports as it would for any server.

use serde_json::{Map, Value, json};

const MAGIC: &[u8] = b"k8s\x00";

#[derive(Debug)]
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Other,
}

fn varint(b: &[u8], i: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*i).ok_or("truncated varint")?;
        *i += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint too long".into())
}

fn fields(b: &[u8]) -> Result<Vec<(u64, Field<'_>)>, String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let key = varint(b, &mut i)?;
        let (num, wire) = (key >> 3, key & 7);
        let f = match wire {
            0 => Field::Varint(varint(b, &mut i)?),
            2 => {
                let n = usize::try_from(varint(b, &mut i)?).map_err(|e| e.to_string())?;
                let s = b.get(i..i + n).ok_or("truncated field")?;
                i += n;
                Field::Bytes(s)
            }
            1 => {
                i += 8;
                Field::Other
            }
            5 => {
                i += 4;
                Field::Other
            }
            w => return Err(format!("unsupported wire type `{w}`")),
        };
        out.push((num, f));
    }
    Ok(out)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn map_entry(b: &[u8], base64_value: bool) -> Result<(String, Value), String> {
    let mut k = String::new();
    let mut v = Value::String(String::new());
    for (n, f) in fields(b)? {
        if let Field::Bytes(s) = f {
            match n {
                1 => k = text(s),
                2 if base64_value => {
                    use base64::Engine;
                    v = json!(base64::engine::general_purpose::STANDARD.encode(s));
                }
                2 => v = json!(text(s)),
                _ => {}
            }
        }
    }
    Ok((k, v))
}

fn object_meta(b: &[u8]) -> Result<Value, String> {
    let mut m = Map::new();
    let mut labels = Map::new();
    let mut annotations = Map::new();
    let mut finalizers = Vec::new();
    for (n, f) in fields(b)? {
        let Field::Bytes(s) = f else { continue };
        match n {
            // Unset strings arrive empty.
            1..=3 if s.is_empty() => {}
            1 => {
                m.insert("name".into(), json!(text(s)));
            }
            2 => {
                m.insert("generateName".into(), json!(text(s)));
            }
            3 => {
                m.insert("namespace".into(), json!(text(s)));
            }
            11 => {
                let (k, v) = map_entry(s, false)?;
                labels.insert(k, v);
            }
            12 => {
                let (k, v) = map_entry(s, false)?;
                annotations.insert(k, v);
            }
            14 => finalizers.push(json!(text(s))),
            _ => {}
        }
    }
    if !labels.is_empty() {
        m.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        m.insert("annotations".into(), Value::Object(annotations));
    }
    if !finalizers.is_empty() {
        m.insert("finalizers".into(), Value::Array(finalizers));
    }
    Ok(Value::Object(m))
}

/// Decode a protobuf-encoded Namespace, Secret or ConfigMap into its JSON form.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or("not a Kubernetes protobuf envelope")?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for (n, f) in fields(rest)? {
        match (n, f) {
            (1, Field::Bytes(tm)) => {
                for (tn, tf) in fields(tm)? {
                    if let Field::Bytes(s) = tf {
                        match tn {
                            1 => api_version = text(s),
                            2 => kind = text(s),
                            _ => {}
                        }
                    }
                }
            }
            (2, Field::Bytes(r)) => raw = r,
            _ => {}
        }
    }
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert("kind".into(), json!(kind));
    let mut data = Map::new();
    let mut binary = Map::new();
    for (n, f) in fields(raw)? {
        match (kind.as_str(), n, f) {
            (_, 1, Field::Bytes(s)) => {
                obj.insert("metadata".into(), object_meta(s)?);
            }
            ("Secret", 2, Field::Bytes(s)) => {
                let (k, v) = map_entry(s, true)?;
                data.insert(k, v);
            }
            ("Secret", 3, Field::Bytes(s)) => {
                obj.insert("type".into(), json!(text(s)));
            }
            ("Secret", 5, Field::Varint(v)) | ("ConfigMap", 4, Field::Varint(v)) => {
                obj.insert("immutable".into(), json!(v != 0));
            }
            ("ConfigMap", 2, Field::Bytes(s)) => {
                let (k, v) = map_entry(s, false)?;
                data.insert(k, v);
            }
            ("ConfigMap", 3, Field::Bytes(s)) => {
                let (k, v) = map_entry(s, true)?;
                binary.insert(k, v);
            }
            ("Namespace", 2, Field::Bytes(s)) => {
                let fin: Vec<Value> = fields(s)?
                    .into_iter()
                    .filter_map(|(n, f)| match (n, f) {
                        (1, Field::Bytes(x)) => Some(json!(text(x))),
                        _ => None,
                    })
                    .collect();
                obj.insert("spec".into(), json!({"finalizers": fin}));
            }
            ("Secret" | "ConfigMap" | "Namespace", _, _) => {}
            (other, _, _) => {
                return Err(format!(
                    "protobuf bodies of kind `{other}` are not supported"
                ));
            }
        }
    }
    if !data.is_empty() {
        obj.insert("data".into(), Value::Object(data));
    }
    if !binary.is_empty() {
        obj.insert("binaryData".into(), Value::Object(binary));
    }
    Ok(Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ld(num: u8, b: &[u8]) -> Vec<u8> {
        let mut v = vec![(num << 3) | 2, b.len() as u8];
        v.extend_from_slice(b);
        v
    }

    #[test]
    fn decodes_a_secret() {
        let meta = [
            ld(1, b"ca"),
            ld(3, b"kube-system"),
            ld(11, &[ld(1, b"a"), ld(2, b"b")].concat()),
        ]
        .concat();
        let secret = [
            ld(1, &meta),
            ld(2, &[ld(1, b"ca.crt"), ld(2, b"PEM")].concat()),
            ld(3, b"Opaque"),
        ]
        .concat();
        let tm = [ld(1, b"v1"), ld(2, b"Secret")].concat();
        let body = [MAGIC.to_vec(), ld(1, &tm), ld(2, &secret)].concat();
        let v = decode(&body).unwrap();
        assert_eq!(v["kind"], "Secret");
        assert_eq!(v["metadata"]["name"], "ca");
        assert_eq!(v["metadata"]["labels"]["a"], "b");
        assert_eq!(v["data"]["ca.crt"], "UEVN");
        assert_eq!(v["type"], "Opaque");
    }
}
