//! `--cilium-values FILE`: a team's Cilium Helm values (the file they deploy
//! with), read for the keys that decide which [`conformance_contract::SETTINGS`]
//! the deployment turns on. Pure: text in, settings (or one error line) out.
//!
//! Only the keys below are read; every other key is left alone, whatever it
//! holds. A key we read with the wrong type or an unknown value is an error
//! naming its line (`values.yaml:3: kubeProxyReplacement: expected true or false,
//! found "maybe"`), like a file that is not YAML at all, so a typo never reads as
//! the chart's default.
//!
//! # Defaults (Cilium chart 1.19)
//!
//! Keys the file does not set (or sets to `null`/`~`) take the 1.19 chart's
//! defaults, as its `values.yaml` documents them (types checked against
//! `shared/schemas/cilium-1.19.5-values.schema.json`):
//!
//! | key | type (schema) | default | read as |
//! |---|---|---|---|
//! | `kubeProxyReplacement` | string or boolean | `"false"` | `true`/`false`, or the strings `"true"`/`"false"` |
//! | `routingMode` | string | `""`: the agent's default, `tunnel` | `native`, `tunnel` or `""` |
//! | `tunnelProtocol` | string | `""`: the agent's default, `vxlan` | `vxlan`, `geneve` or `""` |
//! | `bpf.hostLegacyRouting` | null or boolean | `~`: the agent chooses (below) | |
//! | `bpf.masquerade` | null or boolean | `~`: `false` | |
//! | `enableIPv4Masquerade` | null or boolean | `~`: `true` | |
//! | `bpf.enableTCX` | boolean | `true` | |
//! | `bpf.datapathMode` | string | `veth` | `veth`, `netkit`, `netkit-l2` |
//! | `bpf.autoMount.enabled` | boolean | `true` | |
//! | `loadBalancer.acceleration` | string | `disabled` | `disabled`, `native`, `best-effort` |
//! | `ipv6.enabled` | boolean | `false` | |
//!
//! How they map onto settings:
//! - `base-datapath`: every install.
//! - `bpffs-mount`: `bpf.autoMount.enabled` (the agent's `mount-bpf-fs` init
//!   container mounts bpffs beside the node, the k3d mount problem).
//! - `tcx-attach` when `bpf.enableTCX` is true or `bpf.datapathMode` is a netkit
//!   mode (netkit forces TCX); `legacy-tc-attach` otherwise.
//! - `bpf-host-routing` when `bpf.hostLegacyRouting` is not `true` and the agent's
//!   own conditions hold: `kubeProxyReplacement` true and BPF masquerading
//!   (`bpf.masquerade` true, or masquerading off altogether with
//!   `enableIPv4Masquerade: false`). Otherwise the agent runs
//!   `legacy-host-routing`, even with `bpf.hostLegacyRouting: false` written out.
//! - `kube-proxy-replacement` when `kubeProxyReplacement` is true;
//!   `bpf-masquerade` when `bpf.masquerade` is true and masquerading is on.
//! - `native-routing` for `routingMode: native`; otherwise `tunnel-vxlan` or
//!   `tunnel-geneve` by `tunnelProtocol`.
//! - `netkit` / `netkit-l2` by `bpf.datapathMode`.
//! - `ipv6` when `ipv6.enabled` is true (dual-stack pods).
//! - `xdp-acceleration` for `loadBalancer.acceleration: native` (`best-effort`
//!   falls back where XDP is missing by design, so it turns nothing on here).
//!
//! # Reading YAML as Helm does
//!
//! Helm reads values with go-yaml v2 rules, where a plain `yes`, `no`, `on`,
//! `off`, `y` and `n` are booleans (YAML 1.1) and a quoted `"true"` is a string.
//! So scalars are kept unresolved (text and quoting style) and resolved here by
//! those rules, not by a YAML 1.2 loader's.
//!
//! The YAML crate is `saphyr` (pure Rust; the yaml-rust2 maintainers' YAML 1.2
//! parser): every node carries its line and column, scan errors too, and with
//! early parsing off it keeps each scalar's text and style. `serde_yaml` is
//! deprecated (archived in 2024), and the serde-based successors (`serde_norway`,
//! `serde_yml`) resolve scalars the YAML 1.2 way before we could see them and
//! report a type error's place only through serde's error, not for values checked
//! after deserializing (an unknown `routingMode`).

use crate::readiness::Enabled;
use saphyr::{MarkedYaml, ScalarStyle, YamlData, YamlLoader};
use saphyr_parser::Parser;
use std::fmt;
use std::path::{Path, PathBuf};

/// The chart version whose defaults [`parse`] applies.
pub const CHART_VERSION: &str = "1.19";

/// A values file that cannot be read, is not YAML, or holds a key we read with a
/// wrong type or value. One line: `FILE:LINE: field: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValuesError {
    pub file: PathBuf,
    /// `None` when the file could not be read at all.
    pub line: Option<usize>,
    /// Dotted key path (`bpf.enableTCX`), `yaml` for syntax errors, `(file)` when unreadable.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ValuesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(
                f,
                "{}:{line}: {}: {}",
                self.file.display(),
                self.field,
                self.message
            ),
            None => write!(
                f,
                "{}: {}: {}",
                self.file.display(),
                self.field,
                self.message
            ),
        }
    }
}

/// What a values file turns on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiliumValues {
    /// As given.
    pub file: PathBuf,
    /// In the order of [`conformance_contract::SETTINGS`].
    pub enabled: Vec<Enabled>,
    /// The TC attach mode the agent tries first: `tcx` (falling back to legacy
    /// where the kernel has no TCX) or `legacy`.
    pub attach: &'static str,
}

impl CiliumValues {
    pub fn setting_ids(&self) -> Vec<&'static str> {
        self.enabled.iter().map(|e| e.setting).collect()
    }
}

/// Reads and parses `path`.
pub fn load(path: &Path) -> Result<CiliumValues, ValuesError> {
    let text = std::fs::read_to_string(path).map_err(|e| ValuesError {
        file: path.to_path_buf(),
        line: None,
        field: "(file)".into(),
        message: format!("cannot read: {e}"),
    })?;
    parse(path, &text)
}

/// A scalar as Helm resolves it.
#[derive(Debug, Clone, PartialEq)]
enum Scalar {
    Null,
    Bool(bool),
    Number(String),
    Str(String),
}

impl Scalar {
    /// `boolean true`, `string "maybe"`, for error messages.
    fn describe(&self, raw: &str) -> String {
        match self {
            Scalar::Null => "null".to_string(),
            Scalar::Bool(_) => format!("boolean {raw}"),
            Scalar::Number(_) => format!("number {raw}"),
            Scalar::Str(s) => format!("string {s:?}"),
        }
    }
}

/// go-yaml v2's resolution of a plain scalar (YAML 1.1 booleans and nulls).
fn resolve_plain(s: &str) -> Scalar {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => Scalar::Null,
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            Scalar::Bool(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            Scalar::Bool(false)
        }
        _ if looks_numeric(s) => Scalar::Number(s.to_string()),
        _ => Scalar::Str(s.to_string()),
    }
}

fn looks_numeric(s: &str) -> bool {
    static NUMBER: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    NUMBER
        .get_or_init(|| {
            regex::Regex::new(
                r"^[-+]?(?:[0-9][0-9_]*|0x[0-9a-fA-F_]+|0o?[0-7_]+|(?:[0-9][0-9_]*)?\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+|\.(?:inf|Inf|INF|nan|NaN|NAN))$",
            )
            .expect("the number pattern compiles")
        })
        .is_match(s)
}

/// A key read from the file, or the chart default.
#[derive(Debug, Clone)]
struct Read<T> {
    value: T,
    /// The value's line; `None`: not set, the chart default.
    line: Option<usize>,
    /// As written (or the default as the chart writes it).
    text: String,
}

impl<T> Read<T> {
    fn default(value: T, text: &str) -> Read<T> {
        Read {
            value,
            line: None,
            text: if text.is_empty() { "\"\"" } else { text }.to_string(),
        }
    }
}

struct Reader<'a> {
    file: &'a Path,
}

impl Reader<'_> {
    fn error(&self, line: usize, field: &str, message: impl Into<String>) -> ValuesError {
        ValuesError {
            file: self.file.to_path_buf(),
            line: Some(line),
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// The node at `path` under `root`, `None` where a key is missing or null.
    fn node<'n>(
        &self,
        root: &'n MarkedYaml<'n>,
        path: &str,
    ) -> Result<Option<&'n MarkedYaml<'n>>, ValuesError> {
        let mut node = root;
        let mut walked = String::new();
        for key in path.split('.') {
            let map = match &node.data {
                YamlData::Mapping(m) => m,
                _ if is_null(node) => return Ok(None),
                other => {
                    let (field, what) = if walked.is_empty() {
                        ("(top level)".to_string(), describe_node(other))
                    } else {
                        (walked.clone(), describe_node(other))
                    };
                    return Err(self.error(
                        node.span.start.line(),
                        &field,
                        format!("expected a mapping, found {what}"),
                    ));
                }
            };
            if !walked.is_empty() {
                walked.push('.');
            }
            walked.push_str(key);
            match map.iter().find(|(k, _)| key_text(k) == Some(key)) {
                Some((_, v)) => node = v,
                None => return Ok(None),
            }
        }
        Ok((!is_null(node)).then_some(node))
    }

    /// A scalar at `path`: (value, raw text, line), `None` where unset.
    fn scalar(
        &self,
        root: &MarkedYaml<'_>,
        path: &str,
    ) -> Result<Option<(Scalar, String, usize)>, ValuesError> {
        let Some(node) = self.node(root, path)? else {
            return Ok(None);
        };
        let line = node.span.start.line();
        match &node.data {
            YamlData::Representation(text, style, tag) => {
                let tag = tag.as_ref().map(|t| t.suffix.as_str());
                let scalar = match (style, tag) {
                    (_, Some("str")) => Scalar::Str(text.to_string()),
                    (ScalarStyle::Plain, _) => resolve_plain(text),
                    _ => Scalar::Str(text.to_string()),
                };
                Ok(Some((scalar, text.to_string(), line)))
            }
            other => Err(self.error(
                line,
                path,
                format!("expected a scalar, found {}", describe_node(other)),
            )),
        }
    }

    fn bool(
        &self,
        root: &MarkedYaml<'_>,
        path: &str,
        default: Option<bool>,
    ) -> Result<Read<Option<bool>>, ValuesError> {
        let text = |d: Option<bool>| d.map_or("~".to_string(), |b| b.to_string());
        match self.scalar(root, path)? {
            None => Ok(Read::default(default, &text(default))),
            Some((Scalar::Bool(b), raw, line)) => Ok(Read {
                value: Some(b),
                line: Some(line),
                text: raw,
            }),
            Some((other, raw, line)) => Err(self.error(
                line,
                path,
                format!(
                    "expected a boolean (true or false), found {}",
                    other.describe(&raw)
                ),
            )),
        }
    }

    /// A string key with a fixed set of values (`""` allowed where the chart has it).
    fn choice(
        &self,
        root: &MarkedYaml<'_>,
        path: &str,
        allowed: &[&str],
        default: &str,
    ) -> Result<Read<String>, ValuesError> {
        let quoted: Vec<String> = allowed
            .iter()
            .filter(|a| !a.is_empty())
            .map(|a| a.to_string())
            .collect();
        let expected = match quoted.as_slice() {
            [one] => one.clone(),
            [init @ .., last] => format!("{} or {last}", init.join(", ")),
            [] => String::new(),
        };
        match self.scalar(root, path)? {
            None => Ok(Read::default(default.to_string(), default)),
            Some((Scalar::Str(s), raw, line)) if allowed.contains(&s.as_str()) => Ok(Read {
                value: s,
                line: Some(line),
                text: raw,
            }),
            Some((other, raw, line)) => Err(self.error(
                line,
                path,
                format!("expected {expected}, found {}", other.describe(&raw)),
            )),
        }
    }

    /// `kubeProxyReplacement`: a boolean, or the strings "true" / "false".
    fn kube_proxy_replacement(&self, root: &MarkedYaml<'_>) -> Result<Read<bool>, ValuesError> {
        const KEY: &str = "kubeProxyReplacement";
        let expected = "expected true or false";
        match self.scalar(root, KEY)? {
            None => Ok(Read::default(false, "\"false\"")),
            Some((Scalar::Bool(b), raw, line)) => Ok(Read {
                value: b,
                line: Some(line),
                text: raw,
            }),
            Some((Scalar::Str(s), raw, line)) if s == "true" || s == "false" => Ok(Read {
                value: s == "true",
                line: Some(line),
                text: format!("{raw:?}"),
            }),
            Some((Scalar::Str(s), _, line))
                if ["strict", "partial", "probe", "disabled"].contains(&s.as_str()) =>
            {
                Err(self.error(
                    line,
                    KEY,
                    format!(
                        "{expected}, found string {s:?} (the strict/partial/probe/disabled modes were removed in Cilium 1.15: strict is true, disabled is false)"
                    ),
                ))
            }
            Some((other, raw, line)) => Err(self.error(
                line,
                KEY,
                format!("{expected}, found {}", other.describe(&raw)),
            )),
        }
    }
}

fn key_text<'a>(key: &'a MarkedYaml<'_>) -> Option<&'a str> {
    match &key.data {
        YamlData::Representation(text, _, _) => Some(text.as_ref()),
        _ => None,
    }
}

fn is_null(node: &MarkedYaml<'_>) -> bool {
    match &node.data {
        YamlData::Representation(text, ScalarStyle::Plain, None) => {
            resolve_plain(text) == Scalar::Null
        }
        YamlData::Value(saphyr::Scalar::Null) => true,
        _ => false,
    }
}

fn describe_node<'a>(data: &YamlData<'a, MarkedYaml<'a>>) -> String {
    match data {
        YamlData::Representation(text, ScalarStyle::Plain, _) => resolve_plain(text).describe(text),
        YamlData::Representation(text, _, _) => format!("string {:?}", text.as_ref()),
        YamlData::Sequence(_) => "a list".to_string(),
        YamlData::Mapping(_) => "a mapping".to_string(),
        _ => "a value of another kind".to_string(),
    }
}

/// `kubeProxyReplacement: true (line 1)`, or `(... chart 1.19 default)`.
fn say<T>(key: &str, read: &Read<T>) -> String {
    match read.line {
        Some(line) => format!("{key}: {} (line {line})", read.text),
        None => format!("{key}: {} (chart {CHART_VERSION} default)", read.text),
    }
}

/// Parses the text of `path` (named in errors as given).
pub fn parse(path: &Path, text: &str) -> Result<CiliumValues, ValuesError> {
    let r = Reader { file: path };
    let mut loader: YamlLoader<'_, MarkedYaml<'_>> = YamlLoader::default();
    loader.early_parse(false);
    let mut parser = Parser::new_from_str(text);
    let syntax = |e: &saphyr::ScanError| {
        r.error(
            e.marker().line().max(1),
            "yaml",
            format!("{} (column {})", e.info(), e.marker().col() + 1),
        )
    };
    parser.load(&mut loader, true).map_err(|e| syntax(&e))?;
    if let Some(e) = loader.error() {
        return Err(syntax(e));
    }
    let docs = loader.into_documents();
    if let Some(second) = docs.get(1) {
        return Err(r.error(
            second.span.start.line().max(1),
            "yaml",
            "a values file holds one YAML document; a second one is here",
        ));
    }
    let empty = MarkedYaml::from(YamlData::Value(saphyr::Scalar::Null));
    let root = docs.first().unwrap_or(&empty);
    if !matches!(root.data, YamlData::Mapping(_)) && !is_null(root) {
        return Err(r.error(
            root.span.start.line().max(1),
            "(top level)",
            format!(
                "expected a mapping of Helm values, found {}",
                describe_node(&root.data)
            ),
        ));
    }

    let kpr = r.kube_proxy_replacement(root)?;
    let routing = r.choice(root, "routingMode", &["", "native", "tunnel"], "")?;
    let tunnel = r.choice(root, "tunnelProtocol", &["", "vxlan", "geneve"], "")?;
    let legacy_routing = r.bool(root, "bpf.hostLegacyRouting", None)?;
    let bpf_masq = r.bool(root, "bpf.masquerade", None)?;
    let ipv4_masq = r.bool(root, "enableIPv4Masquerade", None)?;
    let tcx = r.bool(root, "bpf.enableTCX", Some(true))?;
    let mode = r.choice(
        root,
        "bpf.datapathMode",
        &["veth", "netkit", "netkit-l2"],
        "veth",
    )?;
    let automount = r.bool(root, "bpf.autoMount.enabled", Some(true))?;
    let acceleration = r.choice(
        root,
        "loadBalancer.acceleration",
        &["disabled", "native", "best-effort"],
        "disabled",
    )?;
    let ipv6 = r.bool(root, "ipv6.enabled", Some(false))?;

    let mut on: Vec<(&'static str, String)> = vec![("base-datapath", "every install".into())];
    if automount.value == Some(true) {
        on.push(("bpffs-mount", say("bpf.autoMount.enabled", &automount)));
    }
    let netkit = mode.value.starts_with("netkit");
    if netkit {
        on.push((
            "tcx-attach",
            format!("{}, which forces TCX", say("bpf.datapathMode", &mode)),
        ));
    } else if tcx.value == Some(true) {
        on.push(("tcx-attach", say("bpf.enableTCX", &tcx)));
    } else {
        on.push(("legacy-tc-attach", say("bpf.enableTCX", &tcx)));
    }
    // Masquerading is on unless enableIPv4Masquerade says false (default true).
    let masquerading = ipv4_masq.value != Some(false);
    let bpf_masq_on = bpf_masq.value == Some(true) && masquerading;
    let masq_ok = bpf_masq_on || !masquerading;
    let legacy_text = say("bpf.hostLegacyRouting", &legacy_routing);
    if legacy_routing.value == Some(true) {
        on.push(("legacy-host-routing", legacy_text));
    } else if kpr.value && masq_ok {
        let masq = if bpf_masq_on {
            say("bpf.masquerade", &bpf_masq)
        } else {
            say("enableIPv4Masquerade", &ipv4_masq)
        };
        on.push((
            "bpf-host-routing",
            format!(
                "{legacy_text} with {} and {masq}",
                say("kubeProxyReplacement", &kpr)
            ),
        ));
    } else {
        let missing = if !kpr.value {
            say("kubeProxyReplacement", &kpr)
        } else {
            say("bpf.masquerade", &bpf_masq)
        };
        on.push((
            "legacy-host-routing",
            format!(
                "{legacy_text}, but eBPF host routing needs kube-proxy replacement and BPF masquerading ({missing}): the agent routes through the host stack"
            ),
        ));
    }
    if kpr.value {
        on.push(("kube-proxy-replacement", say("kubeProxyReplacement", &kpr)));
    }
    if bpf_masq_on {
        on.push(("bpf-masquerade", say("bpf.masquerade", &bpf_masq)));
    }
    if routing.value == "native" {
        on.push(("native-routing", say("routingMode", &routing)));
    } else {
        let mode = match routing.value.as_str() {
            "" => format!(
                "{}: the agent's default, tunnel",
                say("routingMode", &routing)
            ),
            _ => say("routingMode", &routing),
        };
        let (id, proto) = match tunnel.value.as_str() {
            "geneve" => ("tunnel-geneve", say("tunnelProtocol", &tunnel)),
            "" => (
                "tunnel-vxlan",
                format!(
                    "{}: the agent's default, vxlan",
                    say("tunnelProtocol", &tunnel)
                ),
            ),
            _ => ("tunnel-vxlan", say("tunnelProtocol", &tunnel)),
        };
        on.push((id, format!("{mode}, {proto}")));
    }
    if netkit {
        let id = if mode.value == "netkit-l2" {
            "netkit-l2"
        } else {
            "netkit"
        };
        on.push((id, say("bpf.datapathMode", &mode)));
    }
    if ipv6.value == Some(true) {
        on.push(("ipv6", say("ipv6.enabled", &ipv6)));
    }
    if acceleration.value == "native" {
        on.push((
            "xdp-acceleration",
            say("loadBalancer.acceleration", &acceleration),
        ));
    }

    let enabled = conformance_contract::SETTINGS
        .iter()
        .filter_map(|s| {
            on.iter()
                .find(|(id, _)| *id == s.id)
                .map(|(_, because)| Enabled {
                    setting: s.id,
                    because: because.clone(),
                })
        })
        .collect();
    Ok(CiliumValues {
        file: path.to_path_buf(),
        enabled,
        attach: if netkit || tcx.value == Some(true) {
            "tcx"
        } else {
            "legacy"
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> CiliumValues {
        parse(Path::new("values.yaml"), text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn error(text: &str) -> String {
        parse(Path::new("values.yaml"), text)
            .err()
            .unwrap_or_else(|| panic!("accepted:\n{text}"))
            .to_string()
    }

    fn because(v: &CiliumValues, id: &str) -> String {
        v.enabled
            .iter()
            .find(|e| e.setting == id)
            .map(|e| e.because.clone())
            .unwrap_or_else(|| panic!("{id} not on: {:?}", v.setting_ids()))
    }

    /// kube-hetzner's Cilium values, as fixtures/cilium-values/production.yaml has them.
    const PRODUCTION: &str = include_str!("../../fixtures/cilium-values/production.yaml");

    #[test]
    fn the_production_values_turn_on_what_kube_hetzner_runs() {
        let v = parse_ok(PRODUCTION);
        assert_eq!(
            v.setting_ids(),
            [
                "base-datapath",
                "bpffs-mount",
                "tcx-attach",
                "bpf-host-routing",
                "kube-proxy-replacement",
                "bpf-masquerade",
                "native-routing",
            ]
        );
        let kpr_line = PRODUCTION
            .lines()
            .position(|l| l.starts_with("kubeProxyReplacement:"))
            .unwrap()
            + 1;
        assert_eq!(
            because(&v, "kube-proxy-replacement"),
            format!("kubeProxyReplacement: true (line {kpr_line})")
        );
        assert!(
            because(&v, "bpf-host-routing").starts_with(
                "bpf.hostLegacyRouting: ~ (chart 1.19 default) with kubeProxyReplacement: true (line"
            ),
            "{}",
            because(&v, "bpf-host-routing")
        );
        assert_eq!(
            because(&v, "tcx-attach"),
            "bpf.enableTCX: true (chart 1.19 default)"
        );
        assert_eq!(v.attach, "tcx");
    }

    #[test]
    fn an_empty_file_is_the_charts_defaults() {
        for text in ["", "# nothing\n", "---\n", "~\n"] {
            let v = parse_ok(text);
            assert_eq!(
                v.setting_ids(),
                [
                    "base-datapath",
                    "bpffs-mount",
                    "tcx-attach",
                    "legacy-host-routing",
                    "tunnel-vxlan"
                ],
                "{text:?}"
            );
            assert_eq!(
                because(&v, "tunnel-vxlan"),
                "routingMode: \"\" (chart 1.19 default): the agent's default, tunnel, tunnelProtocol: \"\" (chart 1.19 default): the agent's default, vxlan"
            );
            assert!(
                because(&v, "legacy-host-routing").contains(
                    "needs kube-proxy replacement and BPF masquerading (kubeProxyReplacement: \"false\" (chart 1.19 default))"
                ),
                "{}",
                because(&v, "legacy-host-routing")
            );
        }
    }

    #[test]
    fn settings_follow_the_values() {
        let v = parse_ok(
            "routingMode: tunnel\ntunnelProtocol: geneve\nbpf:\n  enableTCX: off\n  hostLegacyRouting: true\n  autoMount:\n    enabled: false\nloadBalancer:\n  acceleration: native\nkubeProxyReplacement: \"true\"\n",
        );
        assert_eq!(
            v.setting_ids(),
            [
                "base-datapath",
                "legacy-tc-attach",
                "legacy-host-routing",
                "kube-proxy-replacement",
                "tunnel-geneve",
                "xdp-acceleration"
            ]
        );
        assert_eq!(
            because(&v, "legacy-tc-attach"),
            "bpf.enableTCX: off (line 4)"
        );
        assert_eq!(v.attach, "legacy");
        assert_eq!(
            because(&v, "kube-proxy-replacement"),
            "kubeProxyReplacement: \"true\" (line 10)"
        );
        assert_eq!(
            because(&v, "tunnel-geneve"),
            "routingMode: tunnel (line 1), tunnelProtocol: geneve (line 2)"
        );
        // Dual-stack pods turn the ipv6 setting on; the chart's default is off.
        let v = parse_ok("ipv6:\n  enabled: true\n");
        assert!(v.setting_ids().contains(&"ipv6"));
        assert_eq!(because(&v, "ipv6"), "ipv6.enabled: true (line 2)");
        assert!(!parse_ok("").setting_ids().contains(&"ipv6"));
        // netkit forces TCX whatever enableTCX says.
        let v = parse_ok("bpf:\n  datapathMode: netkit-l2\n  enableTCX: false\n");
        assert_eq!(
            because(&v, "tcx-attach"),
            "bpf.datapathMode: netkit-l2 (line 2), which forces TCX"
        );
        assert!(v.setting_ids().contains(&"netkit-l2"));
        assert!(!v.setting_ids().contains(&"legacy-tc-attach"));
        // Masquerading off altogether: eBPF host routing needs no BPF masquerade.
        let v = parse_ok("kubeProxyReplacement: true\nenableIPv4Masquerade: false\n");
        assert!(v.setting_ids().contains(&"bpf-host-routing"));
        assert!(!v.setting_ids().contains(&"bpf-masquerade"));
        // Nulls are unset; keys we do not read are ignored whatever they hold.
        let v = parse_ok("bpf:\n  masquerade: ~\n  monitorAggregation: [1, 2]\nhubble: 3\n");
        assert!(!v.setting_ids().contains(&"bpf-masquerade"));
    }

    #[test]
    fn a_syntax_error_names_its_line() {
        let e = error("kubeProxyReplacement: true\nbpf:\n  masquerade: true\n   enableTCX: [\n");
        assert!(e.starts_with("values.yaml:4: yaml: "), "{e}");
        let e = error("a: 1\nb: [1, 2\nc: 3\n");
        assert!(e.starts_with("values.yaml:"), "{e}");
        assert!(e.contains(": yaml: "), "{e}");
        let e = error("a: 1\n---\nb: 2\n");
        assert_eq!(
            e,
            "values.yaml:3: yaml: a values file holds one YAML document; a second one is here"
        );
        let e = error("a: 1\na: 2\n");
        assert!(e.starts_with("values.yaml:2: yaml: "), "{e}");
        assert_eq!(e.lines().count(), 1);
    }

    #[test]
    fn a_wrong_type_names_its_line_and_key() {
        assert_eq!(
            error("ipam:\n  mode: kubernetes\nkubeProxyReplacement: maybe\n"),
            "values.yaml:3: kubeProxyReplacement: expected true or false, found string \"maybe\""
        );
        assert!(error("kubeProxyReplacement: strict\n").contains("removed in Cilium 1.15"),);
        assert_eq!(
            error("bpf:\n  enableTCX: \"yes\"\n"),
            "values.yaml:2: bpf.enableTCX: expected a boolean (true or false), found string \"yes\""
        );
        assert_eq!(
            error("bpf:\n  hostLegacyRouting: 1\n"),
            "values.yaml:2: bpf.hostLegacyRouting: expected a boolean (true or false), found number 1"
        );
        assert_eq!(
            error("routingMode: nativ\n"),
            "values.yaml:1: routingMode: expected native or tunnel, found string \"nativ\""
        );
        assert_eq!(
            error("tunnelProtocol: true\n"),
            "values.yaml:1: tunnelProtocol: expected vxlan or geneve, found boolean true"
        );
        assert_eq!(
            error("bpf: true\n"),
            "values.yaml:1: bpf: expected a mapping, found boolean true"
        );
        assert_eq!(
            error("bpf:\n  datapathMode:\n    - netkit\n"),
            "values.yaml:3: bpf.datapathMode: expected a scalar, found a list"
        );
        assert_eq!(
            error("- a\n- b\n"),
            "values.yaml:1: (top level): expected a mapping of Helm values, found a list"
        );
    }

    #[test]
    fn an_unreadable_file_is_one_line_without_a_line_number() {
        let e = load(Path::new("/nonexistent/values.yaml")).unwrap_err();
        assert_eq!(e.line, None);
        assert!(
            e.to_string()
                .starts_with("/nonexistent/values.yaml: (file): cannot read: "),
            "{e}"
        );
    }

    #[test]
    fn plain_scalars_resolve_as_helm_does() {
        assert_eq!(resolve_plain("yes"), Scalar::Bool(true));
        assert_eq!(resolve_plain("Off"), Scalar::Bool(false));
        assert_eq!(resolve_plain("~"), Scalar::Null);
        assert_eq!(resolve_plain("1450"), Scalar::Number("1450".into()));
        assert_eq!(resolve_plain("0x1f"), Scalar::Number("0x1f".into()));
        assert_eq!(resolve_plain("6.6"), Scalar::Number("6.6".into()));
        assert_eq!(resolve_plain("-1e3"), Scalar::Number("-1e3".into()));
        assert_eq!(resolve_plain("10.0.0.1"), Scalar::Str("10.0.0.1".into()));
        assert_eq!(resolve_plain("vxlan"), Scalar::Str("vxlan".into()));
        assert_eq!(
            resolve_plain("127.0.0.1x"),
            Scalar::Str("127.0.0.1x".into())
        );
    }
}
