//! The redaction pass every text of a bundle goes through before it is written.
//!
//! What is replaced, wherever it appears (reasons, link lines, routes, endpoints):
//! PEM private keys (`-----BEGIN ... PRIVATE KEY-----` blocks, cut ones too),
//! bearer tokens, `token=` / `password=` / `secret=` / `api_key=`-like values
//! (also as `key: value`), GitHub tokens (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`,
//! `github_pat_`), AWS access key ids, URL userinfo (`tcp://user:pass@host`),
//! kubeconfig `client-key-data` and `token:`, `last-applied-configuration`
//! annotations, and the keys of IPsec states (`enc`, `auth`, `auth-trunc`, `aead`
//! hex in `ip xfrm state`-like text), which become a short sha256 so two nodes'
//! keys can still be compared.
//!
//! JSON documents are redacted value by value ([`Redactor::json`]): every string
//! through the text patterns, and the value of a key that names a secret
//! (`token`, `password`, `client-key-data`, ...) replaced whole. Replacements
//! contain no quote or backslash, so the text pass run over the rendered JSON
//! afterwards ([`Redactor::text`], as over every file) cannot break it.

use regex::{Captures, Regex};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// What replaced a secret.
pub const REDACTED: &str = "[redacted]";

/// A pattern, what it is called in the manifest, and how it is replaced.
struct Rule {
    kind: &'static str,
    regex: Regex,
    replace: fn(&Captures) -> String,
    /// Runs over rendered JSON too: its match can never take a quote or a
    /// backslash (an escape), so the document stays valid.
    json_safe: bool,
    /// Cheap prefilter (lower-case): the pattern can only match a text that
    /// contains one of these and all of [`Rule::all`]. Most texts hold no
    /// secret, and a substring search costs far less than a regex.
    any: &'static [&'static str],
    all: &'static [&'static str],
}

/// Which rule looks for what, by kind: the prefilter of each.
fn needles(kind: &str) -> (&'static [&'static str], &'static [&'static str]) {
    match kind {
        "private key" => (&["private key"], &[]),
        "ipsec key" => (&["aead", "auth", "enc", "comp"], &["0x"]),
        "github token" => (
            &["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"],
            &[],
        ),
        "aws access key" => (
            &[
                "akia", "asia", "agpa", "aida", "aroa", "anpa", "anva", "aipa",
            ],
            &[],
        ),
        "bearer token" => (&["bearer"], &[]),
        "url userinfo" => (&["://"], &["@"]),
        "kubeconfig key" => (&["client-key-data"], &[]),
        "credential" => (&["token", "passw", "secret", "key"], &[]),
        "last-applied-configuration" => (&["last-applied-configuration"], &[]),
        _ => (&[""], &[]),
    }
}

fn rules() -> &'static [Rule] {
    static RULES: OnceLock<Vec<Rule>> = OnceLock::new();
    RULES.get_or_init(|| {
        let rule = |kind, pattern: &str, replace| Rule {
            kind,
            regex: Regex::new(pattern).expect("redaction patterns compile"),
            replace,
            json_safe: true,
            any: needles(kind).0,
            all: needles(kind).1,
        };
        vec![
            // Whole PEM blocks; `\n` may be a newline or JSON's escape of one.
            rule(
                "private key",
                r"(?s)-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----",
                |_| "[redacted private key]".into(),
            ),
            // A block cut before its END line: the marker and the base64 after it.
            rule(
                "private key",
                r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----(?:[A-Za-z0-9+/=\s]|\\n|\\r)*",
                |_| "[redacted private key]".into(),
            ),
            rule(
                "ipsec key",
                r"(?m)\b(aead|auth-trunc|auth|enc|comp)(\s+)('[^'\s]*'|\S+)(\s+)0x([0-9A-Fa-f]+)",
                |c| {
                    format!(
                        "{}{}{}{}[key sha256:{}]",
                        &c[1],
                        &c[2],
                        &c[3],
                        &c[4],
                        short_hash(&c[5].to_ascii_lowercase())
                    )
                },
            ),
            rule(
                "github token",
                r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,}|\bgithub_pat_[A-Za-z0-9_]{20,}",
                |_| REDACTED.into(),
            ),
            rule(
                "aws access key",
                r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b",
                |_| REDACTED.into(),
            ),
            rule(
                "bearer token",
                r"(?i)\b(bearer)(\s+)[A-Za-z0-9._~+/=-]{8,}",
                |c| format!("{}{}{REDACTED}", &c[1], &c[2]),
            ),
            rule(
                "url userinfo",
                r#"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@"'\\<>\[]+@"#,
                |c| format!("{}{REDACTED}@", &c[1]),
            ),
            rule(
                "kubeconfig key",
                r#"(?i)\b(client-key-data)(["']?\s*[:=]\s*["']?)([^\s"'\\\[][^\s"'\\]*)"#,
                |c| format!("{}{}{REDACTED}", &c[1], &c[2]),
            ),
            rule(
                "credential",
                r#"(?i)\b([A-Za-z0-9_.-]*(?:token|password|passwd|secret|api[_-]?key|access[_-]?key|private[_-]?key)[A-Za-z0-9_.-]*)(\s*[=:]\s*)(["']?)([^\s"'\\&,;\[][^\s"'\\&,;]*)"#,
                |c| format!("{}{}{}{REDACTED}", &c[1], &c[2], &c[3]),
            ),
            // To the end of the line: the annotation is a whole JSON document. In a
            // JSON file the field itself is replaced by [`Redactor::json`].
            Rule {
                json_safe: false,
                ..rule(
                    "last-applied-configuration",
                    r"(?i)(last-applied-configuration['\x22]?\s*[:=]\s*)([^\s\[][^\n]*)",
                    |c| format!("{}{REDACTED}", &c[1]),
                )
            },
        ]
    })
}

/// JSON keys whose (string) value is a secret whatever it looks like.
fn secret_key(key: &str) -> bool {
    static KEY: OnceLock<Regex> = OnceLock::new();
    KEY.get_or_init(|| {
        Regex::new(
            r"(?i)^(?:.*[_.-])?(?:token|password|passwd|secret|api[_-]?key|access[_-]?key|private[_-]?key|client-key-data|authorization|last-applied-configuration)$",
        )
        .expect("key pattern compiles")
    })
    .is_match(key)
}

/// `sha256:` of a key, first 12 hex digits: enough to tell two keys apart.
fn short_hash(hex: &str) -> String {
    let digest = Sha256::digest(hex.as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// Redacts texts and counts what it replaced, by kind, for the manifest.
#[derive(Debug, Default)]
pub struct Redactor {
    counts: BTreeMap<&'static str, usize>,
}

impl Redactor {
    pub fn new() -> Redactor {
        Redactor::default()
    }

    /// Every pattern over `text`, in order.
    pub fn text(&mut self, text: &str) -> String {
        self.apply(text, false)
    }

    /// The patterns that cannot break a rendered JSON document, over one whose
    /// values [`Redactor::json`] has already redacted.
    pub fn json_text(&mut self, text: &str) -> String {
        self.apply(text, true)
    }

    fn apply(&mut self, text: &str, json: bool) -> String {
        let mut out = text.to_string();
        let mut lower = out.to_ascii_lowercase();
        for rule in rules().iter().filter(|r| r.json_safe || !json) {
            let maybe = rule.any.iter().any(|n| lower.contains(n))
                && rule.all.iter().all(|n| lower.contains(n));
            if !maybe {
                continue;
            }
            let mut n = 0;
            let replaced = rule.regex.replace_all(&out, |c: &Captures| {
                n += 1;
                (rule.replace)(c)
            });
            if n > 0 {
                out = replaced.into_owned();
                *self.counts.entry(rule.kind).or_default() += n;
                lower = out.to_ascii_lowercase();
            }
        }
        out
    }

    /// A JSON document, value by value (see the module documentation).
    pub fn json(&mut self, value: &mut Value) {
        match value {
            Value::String(s) => *s = self.text(s),
            Value::Array(items) => items.iter_mut().for_each(|v| self.json(v)),
            Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    match v {
                        Value::String(s) if secret_key(key) && !s.is_empty() => {
                            *s = REDACTED.to_string();
                            *self.counts.entry("secret field").or_default() += 1;
                        }
                        _ => self.json(v),
                    }
                }
            }
            _ => {}
        }
    }

    /// Replacements so far, by kind (`private key`, `github token`, ...).
    pub fn counts(&self) -> &BTreeMap<&'static str, usize> {
        &self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fakes assembled at run time, so no scanner mistakes the source for a leak.
    fn fake_github_token() -> String {
        format!("ghp_{}", "Fa1KeT0ken".repeat(4))
    }

    fn fake_pem(newline: &str) -> String {
        let body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC".repeat(3);
        format!(
            "-----BEGIN RSA PRIVATE KEY-----{newline}{body}{newline}{body}{newline}-----END RSA PRIVATE KEY-----"
        )
    }

    #[test]
    fn private_keys_go_whole_with_real_or_escaped_newlines() {
        let mut r = Redactor::new();
        for nl in ["\n", "\\n", "\r\n"] {
            let text = format!("before {} after", fake_pem(nl));
            let out = r.text(&text);
            assert_eq!(out, "before [redacted private key] after");
        }
        let cut =
            "key: -----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1rZXktdjEAAAAA\\nAAAA\"tail";
        assert_eq!(r.text(cut), "key: [redacted private key]\"tail");
        assert_eq!(r.counts()["private key"], 4);
    }

    #[test]
    fn tokens_and_credentials() {
        let mut r = Redactor::new();
        let gh = fake_github_token();
        let pat = format!("github_pat_{}", "11ABCDEFG0_".repeat(4));
        let aws = format!("AKIA{}", "IOSFODNN7EXAMPLE");
        let cases = [
            (
                format!("push with {gh} now"),
                "push with [redacted] now".to_string(),
            ),
            (format!("x {pat}"), "x [redacted]".into()),
            (format!("id {aws}."), "id [redacted].".into()),
            (
                "Authorization: Bearer abc.def-ghi_jkl".into(),
                "Authorization: Bearer [redacted]".into(),
            ),
            (
                "GET /x?token=s3cr3t&b=1".into(),
                "GET /x?token=[redacted]&b=1".into(),
            ),
            (
                "password=hunter2 user=me".into(),
                "password=[redacted] user=me".into(),
            ),
            ("db_secret: 'abc'".into(), "db_secret: '[redacted]'".into()),
            (
                "AWS_SECRET_ACCESS_KEY=wJalr".into(),
                "AWS_SECRET_ACCESS_KEY=[redacted]".into(),
            ),
            (
                "DOCKER_HOST=tcp://user:pa55@10.0.0.1:2375".into(),
                "DOCKER_HOST=tcp://[redacted]@10.0.0.1:2375".into(),
            ),
            (
                "    client-key-data: LS0tLS1CRUdJTg==".into(),
                "    client-key-data: [redacted]".into(),
            ),
            (
                "    token: eyJhbGciOi".into(),
                "    token: [redacted]".into(),
            ),
            (
                "kubectl.kubernetes.io/last-applied-configuration: {\"kind\":\"Secret\"}".into(),
                "kubectl.kubernetes.io/last-applied-configuration: [redacted]".into(),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(r.text(&input), want, "{input}");
        }
    }

    #[test]
    fn redaction_is_idempotent_and_leaves_ordinary_text() {
        let mut r = Redactor::new();
        let plain = "pod A sent 5/5; pod A eth0 tx 0/5: 5 lost between pod A sent and pod A eth0 tx; \
                     hook lxc34842ca ingress (tcx) in ns host; https://docs.cilium.io/en/stable/; \
                     table 254 10.42.0.11/32 dev lxcae9d95a scope Link";
        assert_eq!(r.text(plain), plain);
        assert!(r.counts().is_empty());
        let once = r.text("token=abc password=def tcp://u:p@h");
        assert_eq!(r.text(&once), once);
    }

    #[test]
    fn ipsec_keys_become_a_short_hash() {
        let mut r = Redactor::new();
        let state = "src 10.0.0.1 dst 10.0.0.2\n\tproto esp spi 0x00000001 reqid 1 mode tunnel\n\
                     \taead rfc4106(gcm(aes)) 0x0102030405060708090a0b0c0d0e0f1011121314 128\n\
                     \tauth-trunc hmac(sha256) 0xAABBCCDDEEFF00112233445566778899 96\n\
                     \tenc 'cbc(aes)' 0xdeadbeefdeadbeefdeadbeefdeadbeef\n";
        let out = r.text(state);
        assert!(!out.contains("0102030405060708"), "{out}");
        assert!(!out.to_lowercase().contains("aabbccddeeff"), "{out}");
        assert!(!out.contains("deadbeef"), "{out}");
        assert!(
            out.contains("proto esp spi 0x00000001"),
            "the SPI is not a key: {out}"
        );
        let hash = short_hash("0102030405060708090a0b0c0d0e0f1011121314");
        assert!(
            out.contains(&format!("aead rfc4106(gcm(aes)) [key sha256:{hash}] 128")),
            "{out}"
        );
        // The same key, in any case, hashes the same: states of two nodes compare.
        let upper = r.text("\tenc cbc(aes) 0xDEADBEEFDEADBEEFDEADBEEFDEADBEEF");
        assert!(out.contains(upper.trim_start_matches("\tenc cbc(aes) ")));
        assert_eq!(r.counts()["ipsec key"], 4);
    }

    #[test]
    fn json_values_and_secret_fields() {
        let mut r = Redactor::new();
        let gh = fake_github_token();
        let mut v = serde_json::json!({
            "reason": format!("leaked {gh}"),
            "token": "opaque-value",
            "client-key-data": "LS0t",
            "nested": [{"password": "x"}, {"links": [format!("2: eth0 {}", fake_pem("\n"))]}],
            "count": 5,
            "token_count": 3,
        });
        r.json(&mut v);
        let text = serde_json::to_string(&v).unwrap();
        for secret in [gh.as_str(), "opaque-value", "LS0t", "MIIEvQIB", "\"x\""] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(v["count"], 5);
        assert_eq!(v["token_count"], 3);
        // The rendered document survives the text pass unchanged and still parses.
        let again = r.json_text(&serde_json::to_string_pretty(&v).unwrap());
        assert_eq!(serde_json::from_str::<Value>(&again).unwrap(), v);
    }

    #[test]
    fn text_pass_over_rendered_json_keeps_it_valid() {
        let mut r = Redactor::new();
        let doc = serde_json::json!({
            "reason": "password=abc\"def and tcp://u:p@h and Bearer abcdefghij\\",
            "pem": fake_pem("\n"),
        });
        let text = serde_json::to_string_pretty(&doc).unwrap();
        let out = r.json_text(&text);
        let back: Value = serde_json::from_str(&out).expect("still JSON");
        let reason = back["reason"].as_str().unwrap();
        assert!(!reason.contains("abc"), "{reason}");
        assert_eq!(back["pem"], "[redacted private key]");
    }
}
