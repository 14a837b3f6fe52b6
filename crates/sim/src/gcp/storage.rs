//! Cloud Storage JSON API: buckets, object metadata and uploads (resumable, multipart, media).

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use md5::Digest;
use serde_json::{Value, json};

use super::server::{Reply, Req, ok};
use super::{
    ApiError, ApiResult, Bucket, Gcp, Object, State, now_ms, project_number, require_service,
    rfc3339,
};

const SERVICE: &str = "storage.googleapis.com";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// Objects up to this size keep their bytes (memory only); larger ones only size and hashes.
const KEEP_BYTES: u64 = 8 * 1024 * 1024;

/// A resumable upload session (memory only: a restarted simulator forgets it, as sessions
/// expire in reality, and clients start over).
#[derive(Clone)]
pub(crate) struct Upload {
    bucket: String,
    name: String,
    meta: Value,
    preconditions: Preconditions,
    received: u64,
    md5: md5::Md5,
    crc: u32,
    data: Option<Vec<u8>>,
    finished: Option<Value>,
}

#[derive(Clone, Default)]
struct Preconditions {
    generation_match: Option<i64>,
    generation_not_match: Option<i64>,
}

impl Preconditions {
    fn from(r: &Req) -> ApiResult<Self> {
        let num = |k: &str| -> ApiResult<Option<i64>> {
            r.q(k)
                .map(|v| {
                    v.parse::<i64>().map_err(|_| {
                        ApiError::new(400, format!("Invalid argument: {k}={v} is not a number"))
                    })
                })
                .transpose()
        };
        Ok(Self {
            generation_match: num("ifGenerationMatch")?,
            generation_not_match: num("ifGenerationNotMatch")?,
        })
    }

    fn check(&self, current: Option<i64>) -> ApiResult<()> {
        let cur = current.unwrap_or(0);
        let failed = self.generation_match.is_some_and(|g| g != cur)
            || self.generation_not_match.is_some_and(|g| g == cur);
        if failed {
            return Err(ApiError::new(
                412,
                "At least one of the pre-conditions you specified did not hold.",
            )
            .with("FAILED_PRECONDITION", "conditionNotMet"));
        }
        Ok(())
    }
}

fn valid_bucket_name(n: &str) -> bool {
    let b = n.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_' | b'.')
        })
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && !n.starts_with("goog")
}

/// The `storage#bucket` resource for an insert body.
pub(crate) fn bucket_resource(project: &str, name: &str, body: &Value, now: i64) -> Value {
    let location = body
        .get("location")
        .and_then(Value::as_str)
        .unwrap_or("US")
        .to_uppercase();
    let location_type = if matches!(location.as_str(), "US" | "EU" | "ASIA") {
        "multi-region"
    } else if location.contains('-') && location.matches('-').count() == 1 {
        "region"
    } else {
        "dual-region"
    };
    let ubla = body
        .pointer("/iamConfiguration/uniformBucketLevelAccess/enabled")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let pap = body
        .pointer("/iamConfiguration/publicAccessPrevention")
        .and_then(Value::as_str)
        .unwrap_or("inherited");
    let mut iam = json!({"uniformBucketLevelAccess": {"enabled": ubla},
        "bucketPolicyOnly": {"enabled": ubla}, "publicAccessPrevention": pap});
    if ubla {
        // Uniform access can be turned off for 90 days after it is turned on.
        let locked = rfc3339(now + 90 * 24 * 3600 * 1000);
        iam["uniformBucketLevelAccess"]["lockedTime"] = json!(locked);
        iam["bucketPolicyOnly"]["lockedTime"] = json!(locked);
    }
    json!({"kind": "storage#bucket", "id": name, "name": name,
        "selfLink": format!("https://www.googleapis.com/storage/v1/b/{name}"),
        "projectNumber": project_number(project).to_string(), "metageneration": "1",
        "location": location, "locationType": location_type,
        "storageClass": body.get("storageClass").and_then(Value::as_str).unwrap_or("STANDARD"),
        "timeCreated": rfc3339(now), "updated": rfc3339(now), "etag": "CAE=",
        "iamConfiguration": iam,
        "labels": body.get("labels").cloned().unwrap_or(json!({}))})
}

fn no_bucket() -> ApiError {
    ApiError::new(404, "The specified bucket does not exist.")
}

fn foreign(permission: &str) -> ApiError {
    ApiError::new(
        403,
        format!(
            "anonymous caller does not have {permission} access to the Google Cloud Storage bucket. Permission '{permission}' denied on resource (or it may not exist)."
        ),
    )
    .with("PERMISSION_DENIED", "forbidden")
}

/// The bucket, checked for ownership and the Storage API being enabled in its project.
fn bucket<'a>(st: &'a mut State, b: &str, permission: &str) -> ApiResult<&'a mut Bucket> {
    if st.foreign_buckets.contains(b) {
        return Err(foreign(permission));
    }
    let project = st
        .buckets
        .get(b)
        .map(|x| x.project.clone())
        .ok_or_else(no_bucket)?;
    require_service(st, &project, SERVICE)?;
    st.buckets.get_mut(b).ok_or_else(no_bucket)
}

/// Route `/storage/v1/b/{rest}`.
pub(crate) fn route(gcp: &Arc<Gcp>, r: &Req, rest: &[&str]) -> ApiResult<Reply> {
    match (&r.method, rest) {
        (&Method::POST, []) => insert_bucket(gcp, r),
        (&Method::GET, []) => {
            let project = r.q("project").unwrap_or("").to_string();
            gcp.with_state(|st| {
                require_service(st, &project, SERVICE)?;
                let items: Vec<Value> = st
                    .buckets
                    .values()
                    .filter(|b| b.project == project)
                    .map(|b| b.meta.clone())
                    .collect();
                ok(json!({"kind": "storage#buckets", "items": items}))
            })
        }
        (&Method::GET, [b]) => gcp
            .with_state(|st| bucket(st, b, "storage.buckets.get").map(|x| x.meta.clone()))
            .and_then(ok),
        (&Method::PATCH, [b]) => {
            let patch = r.json()?;
            gcp.with_state(|st| {
                let bk = bucket(st, b, "storage.buckets.update")?;
                let project = bk.project.clone();
                let mut body = bk.meta.clone();
                super::compute::merge(&mut body, &patch);
                let now = now_ms();
                let mut meta = bucket_resource(&project, b, &body, now);
                // Output-only fields survive a patch; metageneration counts changes.
                let mg = bk.meta["metageneration"]
                    .as_str()
                    .and_then(|m| m.parse::<i64>().ok())
                    .unwrap_or(1);
                meta["metageneration"] = json!((mg + 1).to_string());
                meta["timeCreated"] = bk.meta["timeCreated"].clone();
                meta["location"] = bk.meta["location"].clone();
                meta["locationType"] = bk.meta["locationType"].clone();
                if bk
                    .meta
                    .pointer("/iamConfiguration/uniformBucketLevelAccess/enabled")
                    == meta.pointer("/iamConfiguration/uniformBucketLevelAccess/enabled")
                    && let Some(t) = bk
                        .meta
                        .pointer("/iamConfiguration/uniformBucketLevelAccess/lockedTime")
                        .cloned()
                {
                    meta["iamConfiguration"]["uniformBucketLevelAccess"]["lockedTime"] = t.clone();
                    meta["iamConfiguration"]["bucketPolicyOnly"]["lockedTime"] = t;
                }
                bk.meta = meta.clone();
                ok(meta)
            })
        }
        (&Method::GET, [b, "o"]) => gcp.with_state(|st| {
            let prefix = r.q("prefix").unwrap_or("");
            let items: Vec<Value> = bucket(st, b, "storage.objects.list")?
                .objects
                .iter()
                .filter(|(n, _)| n.starts_with(prefix))
                .map(|(_, o)| o.meta.clone())
                .collect();
            ok(json!({"kind": "storage#objects", "items": items}))
        }),
        (&Method::GET, [b, "o", o]) => {
            let obj = gcp.with_state(|st| {
                bucket(st, b, "storage.objects.get")?
                    .objects
                    .get(*o)
                    .cloned()
                    .ok_or_else(|| ApiError::new(404, format!("No such object: {b}/{o}")))
            })?;
            if r.q("alt") != Some("media") {
                return ok(obj.meta);
            }
            let data = obj.data.ok_or_else(|| {
                ApiError::new(
                    501,
                    format!("the simulator keeps only size and hashes of objects over {KEEP_BYTES} bytes"),
                )
            })?;
            let mut resp = Response::new(Full::new(data));
            for (k, f) in [
                ("x-goog-generation", "generation"),
                ("x-goog-metageneration", "metageneration"),
                ("x-goog-stored-content-length", "size"),
            ] {
                if let Some(v) = obj.meta[f].as_str().and_then(|v| v.parse().ok()) {
                    resp.headers_mut().insert(k, v);
                }
            }
            let hash = format!(
                "crc32c={},md5={}",
                obj.meta["crc32c"].as_str().unwrap_or(""),
                obj.meta["md5Hash"].as_str().unwrap_or("")
            );
            if let Ok(v) = hash.parse() {
                resp.headers_mut().insert("x-goog-hash", v);
            }
            if let Ok(v) = "application/octet-stream".parse() {
                resp.headers_mut().insert("content-type", v);
            }
            Ok(Reply::Raw(resp))
        }
        _ => Err(ApiError::new(
            404,
            format!("The requested URL {} was not found on this server.", r.path),
        )),
    }
}

fn insert_bucket(gcp: &Gcp, r: &Req) -> ApiResult<Reply> {
    let project = r
        .q("project")
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            ApiError::new(400, "Required parameter: project").with("INVALID_ARGUMENT", "required")
        })?
        .to_string();
    let body = r.json()?;
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !valid_bucket_name(&name) {
        return Err(ApiError::new(400, format!("Invalid bucket name: '{name}'")));
    }
    gcp.with_state(|st| {
        require_service(st, &project, SERVICE)?;
        if st.foreign_buckets.contains(&name) {
            return Err(ApiError::new(
                409,
                "The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again.",
            )
            .with("ALREADY_EXISTS", "conflict"));
        }
        if st.buckets.contains_key(&name) {
            return Err(ApiError::new(
                409,
                "Your previous request to create the named bucket succeeded and you already own it.",
            )
            .with("ALREADY_EXISTS", "conflict"));
        }
        let meta = bucket_resource(&project, &name, &body, now_ms());
        st.buckets.insert(
            name.clone(),
            Bucket {
                project: project.clone(),
                meta: meta.clone(),
                objects: Default::default(),
            },
        );
        ok(meta)
    })
}

/// `/upload/storage/v1/b/{bucket}/o`: POST starts an upload, PUT continues a resumable one.
pub(crate) fn upload(gcp: &Arc<Gcp>, r: &Req, b: &str) -> ApiResult<Reply> {
    if r.method == Method::PUT {
        let id = r.q("upload_id").ok_or_else(|| {
            ApiError::new(400, "PUT needs the `upload_id` of a resumable session")
        })?;
        return put_chunk(gcp, r, id);
    }
    if r.method != Method::POST {
        return Err(ApiError::new(
            405,
            format!("{} is not allowed here", r.method),
        ));
    }
    let pre = Preconditions::from(r)?;
    let kind = r.q("uploadType").unwrap_or("");
    let (meta, data) = match kind {
        "resumable" => (r.json()?, None),
        "media" => (json!({}), Some(r.body.clone())),
        "multipart" => {
            let (m, d) = multipart(r)?;
            (m, Some(d))
        }
        _ => {
            return Err(ApiError::new(
                400,
                format!("Invalid upload type `{kind}`: use resumable, multipart or media"),
            ));
        }
    };
    let name = r
        .q("name")
        .map(str::to_string)
        .or_else(|| meta.get("name").and_then(Value::as_str).map(str::to_string))
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::new(400, "Required parameter: name").with("INVALID_ARGUMENT", "required")
        })?;
    let current = gcp.with_state(|st| {
        bucket(st, b, "storage.objects.create").map(|bk| generation_of(bk, &name))
    })?;
    pre.check(current)?;
    let mut up = Upload {
        bucket: b.to_string(),
        name: name.clone(),
        meta,
        preconditions: pre,
        received: 0,
        md5: md5::Md5::new(),
        crc: 0,
        data: Some(Vec::new()),
        finished: None,
    };
    if let Some(d) = data {
        up.append(&d);
        let obj = finish(gcp, &mut up, r.header("x-goog-hash"))?;
        return ok(obj);
    }
    let id = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    gcp.uploads
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id.clone(), up);
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let location = format!(
        "{}/upload/storage/v1/b/{}/o?uploadType=resumable&name={}&upload_id={id}",
        gcp.url(),
        enc(b),
        enc(&name)
    );
    let mut resp = Response::new(Full::new(Bytes::new()));
    if let Ok(v) = location.parse() {
        resp.headers_mut().insert("location", v);
    }
    Ok(Reply::Raw(resp))
}

fn generation_of(b: &Bucket, name: &str) -> Option<i64> {
    b.objects
        .get(name)
        .and_then(|o| o.meta["generation"].as_str())
        .and_then(|g| g.parse().ok())
}

impl Upload {
    fn append(&mut self, d: &[u8]) {
        self.received += d.len() as u64;
        self.md5.update(d);
        self.crc = crc32c::crc32c_append(self.crc, d);
        if self.received > KEEP_BYTES {
            self.data = None;
        } else if let Some(buf) = &mut self.data {
            buf.extend_from_slice(d);
        }
    }
}

/// `Content-Range: bytes a-b/N`, `bytes a-b/*`, `bytes */N` or `bytes */*`.
/// A `Content-Range`: the byte range sent (inclusive), if any, and the total, if known.
type ContentRange = (Option<(u64, u64)>, Option<u64>);

fn content_range(h: &str) -> ApiResult<ContentRange> {
    let bad = || ApiError::new(400, format!("Invalid Content-Range header `{h}`"));
    let rest = h.trim().strip_prefix("bytes ").ok_or_else(bad)?;
    let (range, total) = rest.split_once('/').ok_or_else(bad)?;
    let total = match total {
        "*" => None,
        t => Some(t.parse::<u64>().map_err(|_| bad())?),
    };
    let range = match range {
        "*" => None,
        r => {
            let (a, b) = r.split_once('-').ok_or_else(bad)?;
            let (a, b) = (
                a.parse::<u64>().map_err(|_| bad())?,
                b.parse::<u64>().map_err(|_| bad())?,
            );
            if b < a {
                return Err(bad());
            }
            Some((a, b))
        }
    };
    Ok((range, total))
}

fn put_chunk(gcp: &Arc<Gcp>, r: &Req, id: &str) -> ApiResult<Reply> {
    let mut up = gcp
        .uploads
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(id)
        .cloned()
        .ok_or_else(|| ApiError::new(404, format!("No such upload session: {id}")))?;
    if let Some(obj) = &up.finished {
        return ok(obj.clone());
    }
    let (range, total) = content_range(r.header("content-range").unwrap_or("bytes */*"))?;
    if let Some((a, b)) = range {
        if b - a + 1 != r.body.len() as u64 {
            return Err(ApiError::new(
                400,
                format!(
                    "Content-Range covers {} bytes but the body has {}",
                    b - a + 1,
                    r.body.len()
                ),
            ));
        }
        if a > up.received {
            return Err(ApiError::new(
                400,
                format!(
                    "Upload chunk starts at {a} but only {} bytes were received",
                    up.received
                ),
            ));
        }
        // A resent chunk overlaps what is stored; keep only the new tail.
        let skip = (up.received - a) as usize;
        if skip < r.body.len() {
            up.append(&r.body[skip..]);
        }
    }
    let complete = total.is_some_and(|t| t == up.received);
    if let Some(t) = total
        && up.received > t
    {
        return Err(ApiError::new(
            400,
            format!(
                "received {} bytes, more than the declared total {t}",
                up.received
            ),
        ));
    }
    let reply = if complete {
        let obj = finish(gcp, &mut up, r.header("x-goog-hash"))?;
        up.finished = Some(obj.clone());
        Reply::Json(StatusCode::OK, obj)
    } else {
        let mut resp = Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
        if up.received > 0
            && let Ok(v) = format!("bytes=0-{}", up.received - 1).parse()
        {
            resp.headers_mut().insert("range", v);
        }
        Reply::Raw(resp)
    };
    gcp.uploads
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id.to_string(), up);
    Ok(reply)
}

/// Store the object (preconditions checked again, as the real service does at finalisation).
fn finish(gcp: &Gcp, up: &mut Upload, hash: Option<&str>) -> ApiResult<Value> {
    let md5 = B64.encode(up.md5.clone().finalize());
    let crc = B64.encode(up.crc.to_be_bytes());
    if let Some(h) = hash {
        for part in h.split(',') {
            if let Some(c) = part.trim().strip_prefix("crc32c=")
                && c != crc
            {
                return Err(ApiError::new(
                    400,
                    format!("Provided CRC32C \"{c}\" doesn't match calculated CRC32C \"{crc}\"."),
                ));
            }
            if let Some(m) = part.trim().strip_prefix("md5=")
                && m != md5
            {
                return Err(ApiError::new(
                    400,
                    format!(
                        "Provided MD5 hash \"{m}\" doesn't match calculated MD5 hash \"{md5}\"."
                    ),
                ));
            }
        }
    }
    gcp.with_state(|st| {
        let bk = bucket(st, &up.bucket, "storage.objects.create")?;
        up.preconditions.check(generation_of(bk, &up.name))?;
        let now = now_ms();
        // Real generations are microsecond timestamps; keep them increasing per object.
        let generation = (now * 1000).max(generation_of(bk, &up.name).unwrap_or(0) + 1);
        let b = &up.bucket;
        let n = &up.name;
        let enc = percent_encoding::utf8_percent_encode(n, percent_encoding::NON_ALPHANUMERIC);
        let meta = json!({"kind": "storage#object", "id": format!("{b}/{n}/{generation}"),
            "selfLink": format!("https://www.googleapis.com/storage/v1/b/{b}/o/{enc}"),
            "mediaLink": format!("https://storage.googleapis.com/download/storage/v1/b/{b}/o/{enc}?generation={generation}&alt=media"),
            "name": n, "bucket": b, "generation": generation.to_string(), "metageneration": "1",
            "contentType": up.meta.get("contentType").and_then(Value::as_str).unwrap_or("application/octet-stream"),
            "storageClass": "STANDARD", "size": up.received.to_string(), "md5Hash": md5, "crc32c": crc,
            "etag": B64.encode(generation.to_be_bytes()), "timeCreated": rfc3339(now), "updated": rfc3339(now),
            "timeStorageClassUpdated": rfc3339(now), "timeFinalized": rfc3339(now),
            "metadata": up.meta.get("metadata").cloned().unwrap_or(json!({}))});
        bk.objects.insert(
            n.clone(),
            Object {
                meta: meta.clone(),
                data: up.data.take().map(Bytes::from),
            },
        );
        Ok(meta)
    })
}

/// Split a `multipart/related` upload into its metadata JSON and media bytes.
fn multipart(r: &Req) -> ApiResult<(Value, Bytes)> {
    let ct = r.header("content-type").unwrap_or("");
    let boundary = ct
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .next()
        .map(|b| b.trim_matches('"').to_string())
        .ok_or_else(|| {
            ApiError::new(
                400,
                format!("multipart upload without a boundary in `{ct}`"),
            )
        })?;
    let delim = format!("--{boundary}");
    let body = &r.body[..];
    let mut parts = Vec::new();
    let mut pos = find(body, delim.as_bytes(), 0)
        .ok_or_else(|| ApiError::new(400, "multipart body without its boundary"))?;
    loop {
        pos += delim.len();
        if body[pos..].starts_with(b"--") {
            break;
        }
        let head_end = find(body, b"\r\n\r\n", pos)
            .ok_or_else(|| ApiError::new(400, "multipart part without headers"))?;
        let next = find(body, format!("\r\n{delim}").as_bytes(), head_end + 4)
            .ok_or_else(|| ApiError::new(400, "multipart part without a closing boundary"))?;
        let head = String::from_utf8_lossy(&body[pos..head_end]).to_lowercase();
        parts.push((head, r.body.slice(head_end + 4..next)));
        pos = next + 2;
    }
    let mut meta = json!({});
    let mut media = None;
    for (i, (head, data)) in parts.into_iter().enumerate() {
        if head.contains("name=\"metadata\"") || (i == 0 && head.contains("application/json")) {
            meta = serde_json::from_slice(&data)
                .map_err(|e| ApiError::new(400, format!("multipart metadata is not JSON: {e}")))?;
        } else if head.contains("name=\"checksums\"") {
            continue;
        } else if media.is_none() {
            media = Some(data);
        }
    }
    Ok((
        meta,
        media.ok_or_else(|| ApiError::new(400, "multipart upload without media"))?,
    ))
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(content_range("bytes */*").unwrap(), (None, None));
        assert_eq!(content_range("bytes */10").unwrap(), (None, Some(10)));
        assert_eq!(content_range("bytes 0-9/*").unwrap(), (Some((0, 9)), None));
        assert_eq!(
            content_range("bytes 5-9/10").unwrap(),
            (Some((5, 9)), Some(10))
        );
        assert!(content_range("bytes 9-5/10").is_err());
        assert!(content_range("items 0-1/2").is_err());
    }

    #[test]
    fn bucket_names() {
        assert!(valid_bucket_name("meshfleet-talos-1a2b"));
        assert!(!valid_bucket_name("Upper"));
        assert!(!valid_bucket_name("ab"));
        assert!(!valid_bucket_name("-a-b"));
        assert!(!valid_bucket_name("google-x"));
    }

    #[test]
    fn crc32c_matches_known_vector() {
        // RFC 3720 B.4: 32 bytes of zeros.
        assert_eq!(crc32c::crc32c_append(0, &[0u8; 32]), 0x8a9136aa);
    }
}
