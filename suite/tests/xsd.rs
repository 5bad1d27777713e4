//! The JUnit reports of the fixed runs (one instance, and two side by side) validate against the Jenkins JUnit schema
//! (`../shared/schemas/junit-10.xsd`) with `xmllint`, hostile text included.
//!
//! Its own test binary so that it can be counted as ignored, with the reason
//! printed, where xmllint or the schema is missing (CI installs libxml2-utils).

#[path = "it/fixture.rs"]
mod fixture;

use conformance_suite::report::{InstanceRun, Run, render_junit};
use libtest_mimic::{Arguments, Trial};
use std::path::{Path, PathBuf};
use std::process::Command;

fn junit_xsd() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/schemas/junit-10.xsd")
}

fn missing_tool() -> Option<String> {
    let xsd = junit_xsd();
    if !xsd.is_file() {
        Some(format!("JUnit schema not found at {}", xsd.display()))
    } else if Command::new("xmllint").arg("--version").output().is_err() {
        Some("xmllint is not installed (apt-get install libxml2-utils)".to_string())
    } else {
        None
    }
}

fn validate(name: &str, xml: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join(format!("{name}.xml"));
    std::fs::write(&path, xml).map_err(|e| e.to_string())?;
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(junit_xsd())
        .arg(&path)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{name}: xmllint rejected the JUnit report:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn junit_validates_against_the_jenkins_schema() -> Result<(), String> {
    let mut hostile = fixture::run(true);
    // Characters XML cannot carry, markup, quotes and newlines in every field.
    let lab = &mut hostile.instances[0];
    lab.verdicts[0].reason = "nul\u{0} <tag> & \"quote\" 'apos'\nnext line ]]>".into();
    lab.verdicts[0].check = "x<y>&\"z\"".into();
    lab.facts.notes.insert("odd".into(), "\u{7}bell <b>".into());
    lab.meta.instance.name = "a \"host\" <named> & odd\u{1}".into();
    lab.preamble = vec!["\u{1b}[0m console <noise> & ]]>".into()];
    hostile.meta.run_id = "id with \"quotes\" & <angles>".into();
    let empty = Run::new(
        fixture::meta(false),
        vec![InstanceRun::new(
            fixture::instance_meta(),
            fixture::facts(),
            vec![],
            vec![],
        )],
    );
    let no_instance = Run::new(fixture::meta(false), vec![]);
    validate("lax", &render_junit(&fixture::run(false)))?;
    validate("strict", &render_junit(&fixture::run(true)))?;
    validate("hostile", &render_junit(&hostile))?;
    validate("empty", &render_junit(&empty))?;
    validate("no-instance", &render_junit(&no_instance))?;
    validate(
        "two-instances",
        &render_junit(&fixture::two_instance_run(false)),
    )?;
    validate(
        "two-instances-strict",
        &render_junit(&fixture::two_instance_run(true)),
    )?;
    validate("cilium-values", &render_junit(&fixture::values_run(false)))
}

fn main() {
    let args = Arguments::from_args();
    let missing = missing_tool();
    if let Some(why) = &missing {
        eprintln!("junit schema test ignored: {why}");
    }
    let trial = Trial::test("junit_validates_against_the_jenkins_schema", || {
        junit_validates_against_the_jenkins_schema().map_err(Into::into)
    })
    .with_ignored_flag(missing.is_some());
    libtest_mimic::run(&args, vec![trial]).exit();
}
