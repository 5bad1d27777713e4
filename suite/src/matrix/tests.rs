use super::*;
use conformance_contract::{Facts, KernelVersion};

/// A valid matrix; the line numbers in the tests below refer to it.
const BASE: &str = r#"schema = 1
environment = "vm"

[[expect]]
check = "datapath.redirect-peer"
variant = "tcx"
outcome = "pass"
reason = "works"

[[expect]]
check = "datapath.redirect-peer.scrub"
outcome = "pass"
reason = "fixed kernels scrub"
reference = "https://example.org/cve"

[[expect.unless]]
when = "kernel < 6.1.139"
outcome = "fail"
failure = "not-scrubbed"
reason = "unfixed"
reference = "https://example.org/cve"
"#;

fn write(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// Loads `text` from a temp `vm.toml` and returns the rejection, checking its
/// one-line display along the way.
fn reject(text: &str) -> MatrixError {
    reject_as("vm.toml", text)
}

fn reject_as(name: &str, text: &str) -> MatrixError {
    let (_dir, path) = write(name, text);
    let e = Matrix::load(&path).expect_err("matrix should be rejected");
    let shown = e.to_string();
    let prefix = format!("{}:{}: {}: ", path.display(), e.line.unwrap(), e.field);
    assert!(
        shown.starts_with(&prefix),
        "{shown:?} should start with {prefix:?}"
    );
    assert!(!shown.contains('\n'), "one line: {shown:?}");
    e
}

fn replace(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from}");
    BASE.replacen(from, to, 1)
}

#[track_caller]
fn assert_rejected(e: &MatrixError, kind: MatrixErrorKind, line: usize, field: &str, needle: &str) {
    assert_eq!(
        (e.kind, e.line, e.field.as_str()),
        (kind, Some(line), field),
        "{e}"
    );
    assert!(e.message.contains(needle), "{e} should mention {needle:?}");
}

#[test]
fn base_loads() {
    let (_dir, path) = write("vm.toml", BASE);
    let m = Matrix::load(&path).unwrap();
    assert_eq!(m.environment, Environment::Vm);
    assert_eq!(m.entries.len(), 2);
    assert_eq!(
        (
            m.entries[0].line,
            m.entries[1].line,
            m.entries[1].unless[0].line
        ),
        (5, 11, 17)
    );
    assert_eq!(m.entries[0].variant.as_deref(), Some("tcx"));
    assert_eq!(m.entries[1].unless[0].outcome, ExpectedOutcome::Fail);
}

#[test]
fn unknown_check_lists_known_ids() {
    let e = reject(&replace(
        "datapath.redirect-peer.scrub",
        "datapath.redirect-per",
    ));
    assert_rejected(
        &e,
        MatrixErrorKind::UnknownCheck,
        11,
        "expect[1].check",
        "unknown check \"datapath.redirect-per\" (known: tc.attach.tcx,",
    );
}

#[test]
fn unknown_variant_lists_the_checks_variants() {
    let e = reject(&replace("variant = \"tcx\"", "variant = \"xdp\""));
    assert_rejected(
        &e,
        MatrixErrorKind::UnknownVariant,
        6,
        "expect[0].variant",
        "has no variant \"xdp\" (variants: tcx, legacy, ipv6)",
    );
}

#[test]
fn unknown_fact_in_condition() {
    let e = reject(&replace("kernel < 6.1.139", "kernal < 6.1.139"));
    assert_rejected(
        &e,
        MatrixErrorKind::Condition(ConditionErrorKind::UnknownFact),
        17,
        "expect[1].unless[0].when",
        "at character 1 of the condition: unknown fact `kernal`",
    );
}

#[test]
fn malformed_condition_says_where() {
    let e = reject(&replace("kernel < 6.1.139", "kernel < 6.1.139 and (tcx"));
    assert_rejected(
        &e,
        MatrixErrorKind::Condition(ConditionErrorKind::Syntax),
        17,
        "expect[1].unless[0].when",
        "at character 26 of the condition: expected `)`",
    );
}

#[test]
fn wrong_operator_for_fact_type() {
    let e = reject(&replace("kernel < 6.1.139", "arch >= 'aarch64'"));
    assert_rejected(
        &e,
        MatrixErrorKind::Condition(ConditionErrorKind::Operator),
        17,
        "expect[1].unless[0].when",
        "`>=` does not apply to the text fact `arch`",
    );
}

#[test]
fn bad_outcome_values() {
    let e = reject(&replace("outcome = \"pass\"", "outcome = \"flaky\""));
    assert_rejected(
        &e,
        MatrixErrorKind::Outcome,
        7,
        "expect[0].outcome",
        "expected \"pass\" or \"fail\", got \"flaky\"",
    );
    let e = reject(&replace("outcome = \"fail\"", "outcome = \"unsupported\""));
    assert_rejected(
        &e,
        MatrixErrorKind::Outcome,
        18,
        "expect[1].unless[0].outcome",
        "come from the probe",
    );
    // A TOML type error is caught by serde and still gets its path.
    let e = reject(&replace("outcome = \"pass\"", "outcome = true"));
    assert_rejected(
        &e,
        MatrixErrorKind::Shape,
        7,
        "expect[0].outcome",
        "invalid type",
    );
}

#[test]
fn toml_syntax_error_has_line() {
    let e = reject(&replace("reason = \"works\"", "reason = \"works"));
    assert_rejected(&e, MatrixErrorKind::Syntax, 8, "toml", "");
    let e = reject(&replace(
        "variant = \"tcx\"",
        "variant = \"tcx\"\nvariant = \"legacy\"",
    ));
    assert_eq!((e.kind, e.line), (MatrixErrorKind::Syntax, Some(7)), "{e}");
}

#[test]
fn duplicate_check_variant() {
    let text = format!(
        "{BASE}\n[[expect]]\ncheck = \"datapath.redirect-peer\"\nvariant = \"tcx\"\noutcome = \"pass\"\nreason = \"again\"\n"
    );
    let e = reject(&text);
    assert_rejected(
        &e,
        MatrixErrorKind::Duplicate,
        24,
        "expect[2]",
        "the first is expect[0] at line 5",
    );
    // The same check for another variant, or for every variant, is not a duplicate.
    let ok = text.replacen(
        "variant = \"tcx\"\noutcome = \"pass\"\nreason = \"again\"",
        "outcome = \"pass\"\nreason = \"others\"",
        1,
    );
    let (_dir, path) = write("vm.toml", &ok);
    Matrix::load(&path).unwrap();
}

#[test]
fn unknown_keys_are_rejected_where_they_are() {
    let e = reject(&replace(
        "reason = \"works\"",
        "reason = \"works\"\nreasons = \"typo\"",
    ));
    assert_rejected(
        &e,
        MatrixErrorKind::UnknownKey,
        9,
        "expect[0].reasons",
        "unknown field `reasons`",
    );
    let e = reject(&replace(
        "reason = \"unfixed\"",
        "reason = \"unfixed\"\nif = \"tcx\"",
    ));
    assert_rejected(
        &e,
        MatrixErrorKind::UnknownKey,
        21,
        "expect[1].unless[0].if",
        "unknown field `if`",
    );
    let e = reject(&replace(
        "environment = \"vm\"",
        "environment = \"vm\"\nenv = \"vm\"",
    ));
    assert_rejected(
        &e,
        MatrixErrorKind::UnknownKey,
        3,
        "env",
        "unknown field `env`",
    );
}

#[test]
fn missing_keys_point_at_their_table() {
    let e = reject(&replace("reason = \"works\"\n", ""));
    assert_rejected(
        &e,
        MatrixErrorKind::Shape,
        4,
        "expect[0]",
        "missing field `reason`",
    );
    let e = reject(&replace("schema = 1\n", ""));
    assert_rejected(
        &e,
        MatrixErrorKind::Shape,
        1,
        "(top level)",
        "missing field `schema`",
    );
    // A key written after a table header belongs to that table, as TOML says.
    let e = reject(&format!("{BASE}environment = \"vm\"\n"));
    assert_rejected(
        &e,
        MatrixErrorKind::UnknownKey,
        22,
        "expect[1].unless[0].environment",
        "unknown field `environment`",
    );
}

#[test]
fn wrong_environment_and_schema() {
    let e = reject(&replace("environment = \"vm\"", "environment = \"vmm\""));
    assert_rejected(
        &e,
        MatrixErrorKind::Environment,
        2,
        "environment",
        "unknown environment \"vmm\"",
    );
    let e = reject_as("hetzner.toml", BASE);
    assert_rejected(
        &e,
        MatrixErrorKind::Environment,
        2,
        "environment",
        "says \"vm\" but the file is named for \"hetzner\"",
    );
    let e = reject(&replace("schema = 1", "schema = 2"));
    assert_rejected(
        &e,
        MatrixErrorKind::Schema,
        1,
        "schema",
        "unsupported matrix schema 2",
    );
    // A file not named after an environment may describe any of them...
    let (_dir, path) = write("custom.toml", BASE);
    let m = Matrix::load(&path).unwrap();
    // ...but the run's environment must match it.
    let e = m.ensure_environment(Environment::Hetzner).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:2: environment: this matrix is for \"vm\", but the run's environment is \"hetzner\"",
            path.display()
        )
    );
    m.ensure_environment(Environment::Vm).unwrap();
}

#[test]
fn expected_failures_need_reason_and_reference() {
    let e = reject(&replace(
        "reason = \"unfixed\"\nreference = \"https://example.org/cve\"\n",
        "reason = \"unfixed\"\n",
    ));
    assert_rejected(
        &e,
        MatrixErrorKind::Justification,
        16,
        "expect[1].unless[0].reference",
        "needs a reference",
    );
    let e = reject(&replace("reason = \"works\"", "reason = \"  \""));
    assert_rejected(
        &e,
        MatrixErrorKind::Justification,
        8,
        "expect[0].reason",
        "must say why",
    );
}

#[test]
fn unreadable_file_has_no_line() {
    let e = Matrix::load("/nonexistent/vm.toml").unwrap_err();
    assert_eq!(e.kind, MatrixErrorKind::Io);
    assert!(
        e.to_string()
            .starts_with("/nonexistent/vm.toml: file: cannot read: "),
        "{e}"
    );
}

fn facts(kernel: Option<KernelVersion>) -> Facts {
    let mut f = Facts::example();
    f.kernel = kernel;
    f
}

#[test]
fn expectation_lookup_and_overrides() {
    let m = Matrix::parse(Path::new("fixtures/matrix/vm.toml"), BASE).unwrap();
    let new = facts(Some(KernelVersion::new(6, 18, 44)));
    let old = facts(Some(KernelVersion::new(6, 1, 100)));

    let e = m.expectation("datapath.redirect-peer", "tcx", &new);
    assert_eq!(
        e.decided_by,
        DecidedBy::Entry {
            file: "fixtures/matrix/vm.toml".into(),
            line: 5
        }
    );
    // The entry is for tcx only: legacy falls back to the catalogue's default.
    let e = m.expectation("datapath.redirect-peer", "legacy", &new);
    let spec = conformance_contract::find_check("datapath.redirect-peer").unwrap();
    assert_eq!(
        (e.outcome, e.reason.as_str()),
        (ExpectedOutcome::Pass, spec.pass_because)
    );
    assert_eq!(
        e.decided_by,
        DecidedBy::Catalogue {
            check: "datapath.redirect-peer".into(),
            when: None
        }
    );

    let e = m.expectation("datapath.redirect-peer.scrub", "default", &new);
    assert_eq!(
        (e.outcome, e.decided_by.clone()),
        (
            ExpectedOutcome::Pass,
            DecidedBy::Entry {
                file: "fixtures/matrix/vm.toml".into(),
                line: 11
            }
        )
    );
    let e = m.expectation("datapath.redirect-peer.scrub", "default", &old);
    assert_eq!(e.outcome, ExpectedOutcome::Fail);
    assert_eq!(e.reason, "unfixed");
    assert_eq!(
        e.decided_by,
        DecidedBy::Override {
            file: "fixtures/matrix/vm.toml".into(),
            line: 17,
            when: "kernel < 6.1.139".into()
        }
    );
    assert!(e.undecided.is_empty());
}

#[test]
fn unmeasured_fact_keeps_base_expectation_and_says_so() {
    let m = Matrix::parse(Path::new("vm.toml"), BASE).unwrap();
    let e = m.expectation("datapath.redirect-peer.scrub", "default", &facts(None));
    assert_eq!(e.outcome, ExpectedOutcome::Pass);
    assert_eq!(
        e.undecided,
        vec![Undecided {
            line: Some(17),
            when: "kernel < 6.1.139".into(),
            unmeasured: vec!["kernel".into()]
        }]
    );
    assert_eq!(
        e.undecided_note().unwrap(),
        "kernel not measured, so `when = kernel < 6.1.139` (line 17) could not be decided"
    );
}

#[test]
fn variant_entry_beats_all_variants_entry() {
    let text = r#"schema = 1
environment = "container"
[[expect]]
check = "datapath.stack-delivery"
outcome = "pass"
reason = "all"
[[expect]]
check = "datapath.stack-delivery"
variant = "legacy"
outcome = "fail"
failure = "not-delivered"
reason = "legacy only"
reference = "https://example.org"
"#;
    let m = Matrix::parse(Path::new("container.toml"), text).unwrap();
    let f = Facts::example();
    assert_eq!(
        m.expectation("datapath.stack-delivery", "legacy", &f)
            .reason,
        "legacy only"
    );
    assert_eq!(
        m.expectation("datapath.stack-delivery", "tcx", &f).reason,
        "all"
    );
}

#[test]
fn an_expected_failure_names_a_failure_of_its_check() {
    let e = reject(&replace("failure = \"not-scrubbed\"\n", ""));
    assert_rejected(
        &e,
        MatrixErrorKind::Failure,
        16,
        "expect[1].unless[0].failure",
        "must name the failure it expects",
    );
    assert!(e.message.contains("\"not-scrubbed\" ("), "{e}");
    let e = reject(&replace(
        "failure = \"not-scrubbed\"",
        "failure = \"not-bypassed\"",
    ));
    assert_rejected(
        &e,
        MatrixErrorKind::Failure,
        19,
        "expect[1].unless[0].failure",
        "check \"datapath.redirect-peer.scrub\" has no failure \"not-bypassed\"",
    );
    let e = reject(&replace(
        "reason = \"works\"",
        "reason = \"works\"\nfailure = \"not-delivered\"",
    ));
    assert_rejected(
        &e,
        MatrixErrorKind::Failure,
        9,
        "expect[0].failure",
        "only an expected failure",
    );
    let (_dir, path) = write("vm.toml", BASE);
    let m = Matrix::load(&path).unwrap();
    let unfixed = facts(Some(KernelVersion::new(6, 1, 100)));
    let x = m.expectation("datapath.redirect-peer.scrub", "default", &unfixed);
    assert_eq!(x.failure.as_deref(), Some("not-scrubbed"));
}

const FACTS: &str =
    "\n[[fact]]\nfact = \"tcx\"\nexpected = \"kernel >= 6.6\"\nreason = \"TCX landed in 6.6\"\n";

#[test]
fn fact_entries_say_where_a_fact_is_expected() {
    let text = format!("{BASE}{FACTS}");
    let (_dir, path) = write("vm.toml", &text);
    let m = Matrix::load(&path).unwrap();
    let at = |v| m.fact_expectation("tcx", &facts(v)).presence;
    assert_eq!(
        at(Some(KernelVersion::new(6, 1, 192))),
        FactPresence::NotExpected
    );
    assert_eq!(
        at(Some(KernelVersion::new(6, 18, 0))),
        FactPresence::Expected
    );
    assert_eq!(at(None), FactPresence::Undecided);
    let x = m.fact_expectation("tcx", &facts(None));
    assert_eq!(x.unmeasured, vec!["kernel".to_string()]);
    assert_eq!(
        x.decided_by.location().unwrap(),
        format!("{}:24 when kernel >= 6.6", path.display())
    );
    // No entry here: the catalogue's, which the matrix entry for tcx replaced.
    let x = m.fact_expectation(
        "helper.redirect_peer",
        &facts(Some(KernelVersion::new(4, 19, 0))),
    );
    assert_eq!(x.presence, FactPresence::NotExpected);
    assert_eq!(
        x.decided_by.location().unwrap(),
        "contract/src/catalogue.rs (helper.redirect_peer) when kernel >= 5.10"
    );
    // No entry anywhere: expected everywhere.
    let x = m.fact_expectation("helper.redirect", &facts(None));
    assert_eq!(x.presence, FactPresence::Expected);
    assert!(matches!(x.decided_by, DecidedBy::Default { .. }));
}

#[test]
fn fact_entries_are_validated() {
    let e = reject(&format!("{BASE}{}", FACTS.replace("\"tcx\"", "\"kernel\"")));
    assert_rejected(
        &e,
        MatrixErrorKind::UnknownFact,
        24,
        "fact[0].fact",
        "is not a boolean fact",
    );
    let e = reject(&format!("{BASE}{}", FACTS.replace("\"tcx\"", "\"tcxx\"")));
    assert_rejected(
        &e,
        MatrixErrorKind::UnknownFact,
        24,
        "fact[0].fact",
        "is not a fact",
    );
    let e = reject(&format!("{BASE}{FACTS}{FACTS}"));
    assert_rejected(
        &e,
        MatrixErrorKind::Duplicate,
        29,
        "fact[1]",
        "first is at line 24",
    );
    let e = reject(&format!("{BASE}{}", FACTS.replace(">= 6.6", ">= 6.6 and")));
    assert_eq!(
        (e.line, e.field.as_str()),
        (Some(25), "fact[0].expected"),
        "{e}"
    );
    let e = reject(&format!(
        "{BASE}{}",
        FACTS.replace("TCX landed in 6.6", " ")
    ));
    assert_rejected(
        &e,
        MatrixErrorKind::Justification,
        26,
        "fact[0].reason",
        "must say why",
    );
}
