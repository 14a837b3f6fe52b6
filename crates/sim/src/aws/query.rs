//! The AWS query protocol as the SDKs speak it: form-encoded parameters in, XML out (the
//! `awsQuery` shape for STS and CloudFormation, the `ec2Query` shape for EC2, whose errors and
//! element names differ).

use std::collections::BTreeMap;

/// Parsed form parameters (`Action`, `StackName`, `Filter.1.Name`, …).
pub(crate) struct Params(BTreeMap<String, String>);

impl Params {
    /// Parse an `application/x-www-form-urlencoded` body (and/or query string).
    pub fn parse(parts: &[&str]) -> Self {
        let mut m = BTreeMap::new();
        for text in parts {
            for pair in text.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                m.insert(decode(k), decode(v));
            }
        }
        Self(m)
    }

    /// One parameter.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    /// A list `prefix.1`, `prefix.2`, … in order.
    pub fn list(&self, prefix: &str) -> Vec<&str> {
        (1..)
            .map_while(|i| self.get(&format!("{prefix}.{i}")))
            .collect()
    }
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// Escape text for an XML element.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// `<name>text</name>`, escaped.
pub fn el(name: &str, text: &str) -> String {
    format!("<{name}>{}</{name}>", esc(text))
}

/// A failed call: HTTP status, AWS error code, message.
#[derive(Debug, Clone)]
pub(crate) struct QueryError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl QueryError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// `ValidationError` (400), CloudFormation's catch-all.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(400, "ValidationError", message)
    }
}

/// The services the fake speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    Sts,
    Ec2,
    CloudFormation,
}

impl Service {
    /// The XML namespace of the service's responses.
    fn xmlns(self) -> &'static str {
        match self {
            Self::Sts => "https://sts.amazonaws.com/doc/2011-06-15/",
            Self::Ec2 => "http://ec2.amazonaws.com/doc/2016-11-15/",
            Self::CloudFormation => "http://cloudformation.amazonaws.com/doc/2010-05-15/",
        }
    }

    /// A success body: `awsQuery` wraps the result in `<ActionResult>` and adds
    /// `ResponseMetadata`; `ec2Query` puts the fields and `requestId` directly under
    /// `<ActionResponse>`.
    pub fn ok(self, action: &str, inner: &str, request_id: &str) -> String {
        let ns = self.xmlns();
        match self {
            Self::Ec2 => format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{action}Response xmlns=\"{ns}\">{}{inner}</{action}Response>",
                el("requestId", request_id)
            ),
            _ => format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{action}Response xmlns=\"{ns}\"><{action}Result>{inner}</{action}Result><ResponseMetadata>{}</ResponseMetadata></{action}Response>",
                el("RequestId", request_id)
            ),
        }
    }

    /// An error body: `<Response><Errors><Error>` for EC2, `<ErrorResponse><Error>` otherwise.
    pub fn error(self, e: &QueryError, request_id: &str) -> String {
        match self {
            Self::Ec2 => format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>{}{}</Error></Errors>{}</Response>",
                el("Code", &e.code),
                el("Message", &e.message),
                el("RequestID", request_id)
            ),
            _ => format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse xmlns=\"{}\"><Error><Type>{}</Type>{}{}</Error>{}</ErrorResponse>",
                self.xmlns(),
                if e.status >= 500 {
                    "Receiver"
                } else {
                    "Sender"
                },
                el("Code", &e.code),
                el("Message", &e.message),
                el("RequestId", request_id)
            ),
        }
    }
}

/// Service and region from a SigV4 `Authorization` header
/// (`AWS4-HMAC-SHA256 Credential=AKID/20261201/eu-west-1/ec2/aws4_request, …`).
pub(crate) fn scope(authorization: &str) -> Option<(String, String)> {
    let cred = authorization.split("Credential=").nth(1)?;
    let cred = cred.split([',', ' ']).next()?;
    let parts: Vec<&str> = cred.split('/').collect();
    (parts.len() >= 5).then(|| (parts[2].to_owned(), parts[3].to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_and_params() {
        assert_eq!(
            scope(
                "AWS4-HMAC-SHA256 Credential=AKID/20261201/eu-west-1/ec2/aws4_request, SignedHeaders=host, Signature=x"
            ),
            Some(("eu-west-1".to_owned(), "ec2".to_owned()))
        );
        assert_eq!(scope("Bearer x"), None);
        let p = Params::parse(&[
            "Action=DescribeImages&Owner.1=540036508848&Filter.1.Name=name&Filter.1.Value.1=talos-v1.13.9-eu-west-1-amd64&TemplateBody=%7B%22a%22%3A+1%7D",
        ]);
        assert_eq!(p.get("Action"), Some("DescribeImages"));
        assert_eq!(p.list("Owner"), ["540036508848"]);
        assert_eq!(p.list("Filter.1.Value"), ["talos-v1.13.9-eu-west-1-amd64"]);
        assert_eq!(p.get("TemplateBody"), Some("{\"a\": 1}"));
        assert_eq!(esc("<a&'\">"), "&lt;a&amp;&apos;&quot;&gt;");
    }
}
