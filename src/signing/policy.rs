//! Signed upload policy: the `max_size` and `type` parameters of a URL.

use std::fmt;

use percent_encoding::percent_decode_str;

/// MIME type patterns a file's sniffed type must match: `image/*`,
/// `video/mp4`, `*/*`, separated by commas.
///
/// # Example
///
/// ```
/// use tower_signed_upload::TypeRule;
///
/// let rule = TypeRule::parse("image/*,video/mp4").unwrap();
/// assert!(rule.allows("image/png"));
/// assert!(rule.allows("video/mp4"));
/// assert!(!rule.allows("video/webm"));
/// assert!(!rule.allows("application/zip"));
/// assert_eq!(rule.to_string(), "image/*,video/mp4");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TypeRule {
    patterns: Vec<(String, String)>,
}

fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 127
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
}

impl TypeRule {
    /// Parses a comma-separated list of patterns (percent-encoding allowed);
    /// `None` if any pattern is not `type/subtype`, `type/*` or `*/*`.
    pub fn parse(text: &str) -> Option<Self> {
        let text = percent_decode_str(text).decode_utf8().ok()?;
        let mut patterns = Vec::new();
        for pattern in text.split(',') {
            let (top, sub) = pattern.trim().split_once('/')?;
            let valid = match (top, sub) {
                ("*", "*") => true,
                ("*", _) => false,
                (top, "*") => is_token(top),
                (top, sub) => is_token(top) && is_token(sub),
            };
            if !valid || patterns.len() >= 32 {
                return None;
            }
            patterns.push((top.to_ascii_lowercase(), sub.to_ascii_lowercase()));
        }
        Some(TypeRule { patterns })
    }

    /// Whether `mime` (such as `image/png`) matches a pattern.
    pub fn allows(&self, mime: &str) -> bool {
        let mime = mime
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let Some((top, sub)) = mime.split_once('/') else {
            return false;
        };
        self.patterns
            .iter()
            .any(|(t, s)| (t == "*" || t == top) && (s == "*" || s == sub))
    }
}

/// Writes a pattern's name as a query value carries it: `&` and `#`, which
/// MIME names may hold, would end the parameter or the query, so they are
/// percent-encoded (and [`TypeRule::parse`] decodes them).
fn write_name(f: &mut fmt::Formatter<'_>, name: &str) -> fmt::Result {
    for part in name.split_inclusive(['&', '#']) {
        match part.strip_suffix('&') {
            Some(head) => write!(f, "{head}%26")?,
            None => match part.strip_suffix('#') {
                Some(head) => write!(f, "{head}%23")?,
                None => f.write_str(part)?,
            },
        }
    }
    Ok(())
}

/// The canonical form, as a signed URL's `type` value: lowercase, patterns
/// separated by `,`, `&` and `#` percent-encoded.
impl fmt::Display for TypeRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (top, sub)) in self.patterns.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write_name(f, top)?;
            f.write_str("/")?;
            write_name(f, sub)?;
        }
        Ok(())
    }
}

/// The signed policy of one upload URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Policy {
    pub(crate) max_size: Option<u64>,
    pub(crate) types: Option<TypeRule>,
}

/// What a minted URL carries besides path, method and expiry: the signed
/// policy (`max_size`, `type`) and whether it names its key (`kid`).
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_signed_upload::{SignedMethod, Signer, SigningKey, UploadPath, UrlOptions};
///
/// let signer = Signer::new(SigningKey::new("secret")?.with_id("2025-06")?);
/// let options = UrlOptions::new().max_size(5_000_000).types("image/*")?.key_id();
/// let url = signer.sign_with(&UploadPath::new("a.png").unwrap(), SignedMethod::Put, Duration::from_secs(60), &options)?;
/// assert!(url.as_str().contains("&method=put&max_size=5000000&type=image/*&kid=2025-06&signature="));
/// # Ok::<(), tower_signed_upload::ConfigError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct UrlOptions {
    pub(crate) max_size: Option<u64>,
    pub(crate) types: Option<TypeRule>,
    pub(crate) key_id: bool,
}

impl UrlOptions {
    /// No policy, no key id: the URL `Signer::sign` mints.
    pub fn new() -> Self {
        UrlOptions::default()
    }

    /// The largest file the URL accepts, in bytes (`max_size`).
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = Some(bytes);
        self
    }

    /// The MIME patterns the file's sniffed type must match (`type`), such as
    /// `image/*` or `image/png,image/jpeg`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::TypePattern`](crate::ConfigError::TypePattern) if a pattern is malformed.
    pub fn types(mut self, patterns: &str) -> Result<Self, crate::ConfigError> {
        self.types = Some(TypeRule::parse(patterns).ok_or(crate::ConfigError::TypePattern)?);
        Ok(self)
    }

    /// Names the signing key in the URL (`kid`), so verifiers try only that key.
    pub fn key_id(mut self) -> Self {
        self.key_id = true;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_parse_strictly() {
        for good in [
            "image/*",
            "*/*",
            "video/mp4,image/png",
            "IMAGE/PNG",
            "image%2F*",
            "application/vnd.ms-excel",
        ] {
            assert!(TypeRule::parse(good).is_some(), "{good}");
        }
        for bad in [
            "",
            "image",
            "image/",
            "/png",
            "*/png",
            "image/png,",
            "image/p ng",
            "im\u{e9}ge/*",
            "image/*/*",
        ] {
            assert!(TypeRule::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn display_is_a_query_value_that_parses_back() {
        for text in [
            "image/*",
            "a&b/c#d",
            "x/&&#",
            "Image/SVG+XML,*/*",
            "a%26b/c",
        ] {
            let rule = TypeRule::parse(text).unwrap();
            let shown = rule.to_string();
            assert!(!shown.contains(['&', '#']), "{shown}");
            assert_eq!(TypeRule::parse(&shown), Some(rule), "{text} -> {shown}");
        }
        assert_eq!(TypeRule::parse("a&b/c").unwrap().to_string(), "a%26b/c");
    }

    #[test]
    fn matching_ignores_case_and_parameters() {
        let rule = TypeRule::parse("image/*,text/plain").unwrap();
        assert!(rule.allows("Image/PNG"));
        assert!(rule.allows("text/plain; charset=utf-8"));
        assert!(!rule.allows("text/html"));
        assert!(!rule.allows("garbage"));
        assert!(TypeRule::parse("*/*").unwrap().allows("application/zip"));
    }
}
