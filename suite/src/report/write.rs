//! Writing report files: checked before the run (a typo in `--junit-file` must
//! not cost a 20-minute run), written atomically after it (a reader, or a CI
//! upload racing a killed run, never sees half a file).

use super::{Run, render_json, render_junit, render_markdown};
use crate::error::{EXIT_INFRA, EXIT_USAGE};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where each report goes; `None` skips that format.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportPaths {
    pub junit: Option<PathBuf>,
    pub json: Option<PathBuf>,
    pub markdown: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("report {path}: cannot write there: {source}")]
    NotWritable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("report {path}: is a directory")]
    IsDirectory { path: PathBuf },
    #[error("report {path}: both the {first} and the {second} report would write it")]
    SamePath {
        path: PathBuf,
        first: &'static str,
        second: &'static str,
    },
    #[error("writing report {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ReportError {
    /// Found by [`ReportPaths::preflight`]: bad input (2). Failing after the run: infrastructure (3).
    pub fn exit_code(&self) -> u8 {
        match self {
            ReportError::Write { .. } => EXIT_INFRA,
            _ => EXIT_USAGE,
        }
    }
}

impl ReportPaths {
    /// `junit.xml`, `report.json` and `summary.md` in `dir`.
    pub fn in_dir(dir: &Path) -> ReportPaths {
        ReportPaths {
            junit: Some(dir.join("junit.xml")),
            json: Some(dir.join("report.json")),
            markdown: Some(dir.join("summary.md")),
        }
    }

    fn entries(&self) -> impl Iterator<Item = (&'static str, &Path)> {
        [
            ("junit", &self.junit),
            ("json", &self.json),
            ("markdown", &self.markdown),
        ]
        .into_iter()
        .filter_map(|(name, p)| p.as_deref().map(|p| (name, p)))
    }

    /// Makes sure every report can be written, before the run starts: creates
    /// missing parent directories and creates (and removes) a temporary file
    /// beside each target, the way [`write_reports`] will.
    pub fn preflight(&self) -> Result<(), ReportError> {
        let entries: Vec<(&'static str, &Path)> = self.entries().collect();
        for (i, (name, path)) in entries.iter().enumerate() {
            if let Some((first, _)) = entries[..i].iter().find(|(_, p)| p == path) {
                return Err(ReportError::SamePath {
                    path: path.to_path_buf(),
                    first,
                    second: name,
                });
            }
            if path.is_dir() {
                return Err(ReportError::IsDirectory {
                    path: path.to_path_buf(),
                });
            }
            let dir = parent(path);
            std::fs::create_dir_all(dir)
                .and_then(|_| {
                    tempfile::Builder::new()
                        .prefix(".preflight-")
                        .tempfile_in(dir)
                })
                .map_err(|source| ReportError::NotWritable {
                    path: path.to_path_buf(),
                    source,
                })?;
        }
        Ok(())
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Renders and writes every configured report, each atomically.
pub fn write_reports(run: &Run, paths: &ReportPaths) -> Result<(), ReportError> {
    for (name, path) in paths.entries() {
        let body = match name {
            "junit" => render_junit(run),
            "json" => render_json(run),
            _ => render_markdown(run),
        };
        write_atomic(path, body.as_bytes())?;
    }
    Ok(())
}

/// Writes `bytes` to a temporary file in `path`'s directory, syncs it and
/// renames it over `path`; on any failure the temporary file is removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let err = |source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = parent(path);
    std::fs::create_dir_all(dir).map_err(err)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(err)?;
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(err)?;
    // Temporary files are created 0600; a report is for everyone who can read the folder.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(err)?;
    }
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect()
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deep/er/junit.xml");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        assert!(leftovers(path.parent().unwrap()).is_empty());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o644
            );
        }
    }

    #[test]
    fn preflight_creates_dirs_and_rejects_bad_paths() {
        let dir = tempfile::tempdir().unwrap();
        let paths = ReportPaths::in_dir(&dir.path().join("reports/run-1"));
        paths.preflight().unwrap();
        assert!(dir.path().join("reports/run-1").is_dir());
        assert!(
            leftovers(&dir.path().join("reports/run-1")).is_empty(),
            "the probe file is removed"
        );

        let e = ReportPaths {
            junit: Some(dir.path().to_path_buf()),
            ..Default::default()
        }
        .preflight()
        .unwrap_err();
        assert!(matches!(e, ReportError::IsDirectory { .. }), "{e}");
        assert_eq!(e.exit_code(), 2);

        let same = dir.path().join("x");
        let e = ReportPaths {
            junit: Some(same.clone()),
            markdown: Some(same),
            json: None,
        }
        .preflight()
        .unwrap_err();
        assert!(
            e.to_string()
                .ends_with("both the junit and the markdown report would write it"),
            "{e}"
        );

        // A parent that is a file cannot hold a report.
        std::fs::write(dir.path().join("file"), "").unwrap();
        let bad = dir.path().join("file/junit.xml");
        let e = ReportPaths {
            junit: Some(bad.clone()),
            ..Default::default()
        }
        .preflight()
        .unwrap_err();
        assert!(
            matches!(&e, ReportError::NotWritable { path, .. } if *path == bad),
            "{e}"
        );
        assert!(
            e.to_string()
                .starts_with(&format!("report {}: cannot write there: ", bad.display())),
            "{e}"
        );
        let e = write_atomic(&bad, b"x").unwrap_err();
        assert!(matches!(&e, ReportError::Write { path, .. } if *path == bad));
        assert_eq!(e.exit_code(), 3);
    }
}
