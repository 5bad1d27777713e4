//! `--test` selection, with cilium-cli's semantics: comma-separated regular
//! expressions, a leading `!` excludes. A (check, variant) is selected when it
//! matches some include (or there is none) and no exclude.
//!
//! Each pattern is matched, unanchored, against the check id and against
//! `check[variant]`: `redirect-peer` selects both redirect-peer checks,
//! `!legacy` drops every legacy variant, `^datapath\.redirect-peer$` only that
//! check, `redirect-peer\[tcx\]` one variant (`[` and `]` are regex syntax).
//!
//! A pattern that matches nothing in the catalogue is an error naming it (a
//! typo must not silently run everything or nothing).

use conformance_contract::{CATALOGUE, CheckSpec, PlannedCheck};
use regex::Regex;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    #[error("--test pattern \"{pattern}\" is not a regular expression: {message}")]
    BadRegex { pattern: String, message: String },
    #[error("--test pattern \"{pattern}\" matches no check (known: {known})")]
    NoMatch { pattern: String, known: String },
    #[error("--test \"{arg}\" has an empty pattern")]
    Empty { arg: String },
}

#[derive(Debug, Clone)]
struct Pattern {
    text: String,
    regex: Regex,
}

/// Which (check, variant) pairs a run executes.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    include: Vec<Pattern>,
    exclude: Vec<Pattern>,
}

impl Selection {
    /// Everything.
    pub fn all() -> Selection {
        Selection::default()
    }

    /// Parses `--test` values against the contract's catalogue.
    pub fn parse(args: &[String]) -> Result<Selection, SelectError> {
        Selection::parse_for(args, CATALOGUE)
    }

    /// Parses `--test` values; every pattern must match something in `catalogue`.
    pub fn parse_for(args: &[String], catalogue: &[CheckSpec]) -> Result<Selection, SelectError> {
        let mut selection = Selection::default();
        for arg in args {
            for raw in arg.split(',') {
                let raw = raw.trim();
                let (negated, text) = match raw.strip_prefix('!') {
                    Some(rest) => (true, rest.trim()),
                    None => (false, raw),
                };
                if text.is_empty() {
                    return Err(SelectError::Empty { arg: arg.clone() });
                }
                let regex = Regex::new(text).map_err(|e| SelectError::BadRegex {
                    pattern: raw.to_string(),
                    // regex errors are multi-line with a caret; keep the last line.
                    message: e
                        .to_string()
                        .lines()
                        .last()
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                })?;
                let pattern = Pattern {
                    text: raw.to_string(),
                    regex,
                };
                let hits = catalogue
                    .iter()
                    .any(|c| c.variants.iter().any(|v| pattern.matches(c.id, v)));
                if !hits {
                    let known: Vec<&str> = catalogue.iter().map(|c| c.id).collect();
                    return Err(SelectError::NoMatch {
                        pattern: raw.to_string(),
                        known: known.join(", "),
                    });
                }
                if negated {
                    selection.exclude.push(pattern)
                } else {
                    selection.include.push(pattern)
                }
            }
        }
        Ok(selection)
    }

    pub fn matches(&self, check: &str, variant: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| p.matches(check, variant)))
            && !self.exclude.iter().any(|p| p.matches(check, variant))
    }

    /// The selected (check, variant) pairs of `catalogue`, in catalogue order.
    pub fn plan(&self, catalogue: &[CheckSpec]) -> Vec<PlannedCheck> {
        catalogue
            .iter()
            .flat_map(|c| c.variants.iter().map(move |v| (c.id, *v)))
            .filter(|(check, variant)| self.matches(check, variant))
            .map(|(check, variant)| PlannedCheck {
                check: check.to_string(),
                variant: variant.to_string(),
            })
            .collect()
    }

    /// The patterns as given (`!` kept), for the report.
    pub fn patterns(&self) -> Vec<String> {
        self.include
            .iter()
            .chain(&self.exclude)
            .map(|p| p.text.clone())
            .collect()
    }
}

impl Pattern {
    fn matches(&self, check: &str, variant: &str) -> bool {
        self.regex.is_match(check) || self.regex.is_match(&format!("{check}[{variant}]"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(args: &[&str]) -> Vec<String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Selection::parse(&args)
            .unwrap()
            .plan(CATALOGUE)
            .into_iter()
            .map(|p| format!("{}[{}]", p.check, p.variant))
            .collect()
    }

    fn all_count() -> usize {
        CATALOGUE.iter().map(|c| c.variants.len()).sum()
    }

    #[test]
    fn no_patterns_select_everything() {
        assert_eq!(names(&[]).len(), all_count());
        assert!(Selection::all().matches("anything", "at-all"));
    }

    #[test]
    fn includes_are_unanchored_regexes() {
        assert_eq!(
            names(&["redirect-peer"]),
            [
                "datapath.redirect-peer[tcx]",
                "datapath.redirect-peer[legacy]",
                "datapath.redirect-peer[ipv6]",
                "datapath.redirect-peer.scrub[default]",
                "datapath.redirect-peer.scrub.conntrack[default]",
                "datapath.redirect-peer.scrub.dst[default]",
                "datapath.redirect-peer.scrub.skb-ext[default]",
                "datapath.redirect-peer.scrub.mark[default]",
                "datapath.redirect-peer.scrub.xfrm[default]"
            ]
        );
        assert_eq!(
            names(&["^datapath\\.redirect-peer$"]),
            [
                "datapath.redirect-peer[tcx]",
                "datapath.redirect-peer[legacy]",
                "datapath.redirect-peer[ipv6]"
            ]
        );
        assert_eq!(
            names(&["redirect-peer\\[tcx\\]"]),
            ["datapath.redirect-peer[tcx]"]
        );
    }

    #[test]
    fn excludes_with_bang_and_commas_combine() {
        let got = names(&["datapath,!legacy", "!scrub"]);
        assert!(
            got.iter().all(|n| n.starts_with("datapath.")
                && !n.contains("legacy")
                && !n.contains("scrub")),
            "{got:?}"
        );
        assert!(got.contains(&"datapath.stack-delivery[tcx]".to_string()));
        // Only excludes: everything else.
        assert_eq!(
            names(&["!tcx"]).len(),
            all_count() - 4,
            "tc.attach.tcx and three [tcx] variants"
        );
    }

    #[test]
    fn a_pattern_matching_nothing_is_an_error_naming_it() {
        let e = Selection::parse(&["datapath,redirect-per\\b".into()]).unwrap_err();
        assert!(
            matches!(&e, SelectError::NoMatch { pattern, .. } if pattern == "redirect-per\\b"),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains("known: tc.attach.tcx, tc.attach.legacy"),
            "{e}"
        );
        let e = Selection::parse(&["!nothing-like-this".into()]).unwrap_err();
        assert!(
            matches!(e, SelectError::NoMatch { .. }),
            "a typo in an exclude is caught too"
        );
    }

    #[test]
    fn bad_regex_and_empty_patterns() {
        let e = Selection::parse(&["redirect(".into()]).unwrap_err();
        assert!(
            matches!(&e, SelectError::BadRegex { pattern, .. } if pattern == "redirect("),
            "{e}"
        );
        assert!(!e.to_string().contains('\n'), "{e}");
        assert_eq!(
            Selection::parse(&["tcx,,legacy".into()]).unwrap_err(),
            SelectError::Empty {
                arg: "tcx,,legacy".into()
            }
        );
        assert!(matches!(
            Selection::parse(&["!".into()]),
            Err(SelectError::Empty { .. })
        ));
    }
}
