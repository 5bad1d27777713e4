//! Writing the comparison's files: checked before anything is read (a typo in
//! `--markdown` fails at once, and no output may overwrite an input run),
//! rendered whole, then each written atomically (a temporary file beside it,
//! synced, renamed), so a reader never sees half a report.

use super::{Comparison, render_json, render_junit, render_markdown};
use crate::report::{ReportError, ReportPaths, write_atomic};
use std::path::{Path, PathBuf};

/// Where each output goes; `None` skips it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputPaths {
    pub markdown: Option<PathBuf>,
    pub json: Option<PathBuf>,
    pub junit: Option<PathBuf>,
}

impl OutputPaths {
    fn as_report_paths(&self) -> ReportPaths {
        ReportPaths {
            junit: self.junit.clone(),
            json: self.json.clone(),
            markdown: self.markdown.clone(),
        }
    }

    fn entries(&self) -> impl Iterator<Item = (&'static str, &Path)> {
        [
            ("markdown", &self.markdown),
            ("json", &self.json),
            ("junit", &self.junit),
        ]
        .into_iter()
        .filter_map(|(n, p)| p.as_deref().map(|p| (n, p)))
    }

    /// Every output can be written (parents created, a probe file made and
    /// removed), no two share a path, and none is one of `inputs`. Errors are
    /// bad usage (exit 2).
    pub fn preflight(&self, inputs: &[PathBuf]) -> Result<(), String> {
        for (name, path) in self.entries() {
            if inputs.iter().any(|i| same_file(i, path)) {
                return Err(format!(
                    "--{name} {}: is one of the runs being compared; it would be overwritten",
                    path.display()
                ));
            }
        }
        self.as_report_paths()
            .preflight()
            .map_err(|e| e.to_string().replacen("report ", "output ", 1))
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Every configured output rendered, each on its own thread: (path, text).
pub fn render_outputs<'p>(c: &Comparison, paths: &'p OutputPaths) -> Vec<(&'p Path, String)> {
    let entries: Vec<(&'static str, &Path)> = paths.entries().collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = entries
            .iter()
            .map(|(name, path)| {
                let name = *name;
                let path = *path;
                scope.spawn(move || {
                    let body = match name {
                        "markdown" => render_markdown(c),
                        "json" => render_json(c),
                        _ => render_junit(c),
                    };
                    (path, body)
                })
            })
            .collect();
        handles
            .into_iter()
            .zip(&entries)
            .map(|(h, (name, path))| {
                h.join().unwrap_or_else(|_| {
                    (*path, format!("the {name} output could not be rendered\n"))
                })
            })
            .collect()
    })
}

/// Renders every configured output ([`render_outputs`]), then writes each
/// atomically. A failure to write is an infrastructure error (exit 3,
/// [`ReportError::exit_code`]).
pub fn write_outputs(c: &Comparison, paths: &OutputPaths) -> Result<(), ReportError> {
    for (path, body) in render_outputs(c, paths) {
        write_atomic(path, body.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preflight_refuses_inputs_shared_and_bad_paths() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("run.json");
        std::fs::write(&input, "{}").unwrap();
        let e = OutputPaths {
            json: Some(input.clone()),
            ..Default::default()
        }
        .preflight(std::slice::from_ref(&input))
        .unwrap_err();
        assert!(e.contains("is one of the runs being compared"), "{e}");

        let same = dir.path().join("out");
        let e = OutputPaths {
            markdown: Some(same.clone()),
            junit: Some(same),
            json: None,
        }
        .preflight(&[])
        .unwrap_err();
        assert!(
            e.starts_with("output ") && e.ends_with("would write it"),
            "{e}"
        );

        let ok = OutputPaths {
            markdown: Some(dir.path().join("deep/summary.md")),
            ..Default::default()
        };
        ok.preflight(&[input]).unwrap();
        assert!(dir.path().join("deep").is_dir());
    }

    #[test]
    fn atomic_write_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.md");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["x.md"]);
        std::fs::write(dir.path().join("file"), "").unwrap();
        let e = write_atomic(&dir.path().join("file/x.md"), b"x").unwrap_err();
        assert_eq!(e.exit_code(), 3);
    }
}
