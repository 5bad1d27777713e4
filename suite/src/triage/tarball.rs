//! `DIR.tar.gz`, reproducibly: the same files give the same bytes. Entries are
//! sorted by path (directories as their own entries), every entry has mtime 0,
//! uid and gid 0, no user or group name, mode 0644 (directories 0755), and the gzip
//! header carries no file name and mtime 0.

use flate2::{Compression, GzBuilder};
use std::collections::BTreeSet;
use std::io::Write;

/// `files` (bundle-relative paths, `/`-separated) under `root/` as a `.tar.gz`.
pub fn tar_gz(root: &str, files: &[(&str, &[u8])]) -> std::io::Result<Vec<u8>> {
    let mut dirs = BTreeSet::new();
    dirs.insert(root.to_string());
    for (path, _) in files {
        let mut at = root.to_string();
        let parts: Vec<&str> = path.split('/').collect();
        for part in &parts[..parts.len() - 1] {
            at = format!("{at}/{part}");
            dirs.insert(at.clone());
        }
    }
    let mut entries: Vec<(String, Option<&[u8]>)> = dirs
        .into_iter()
        .map(|d| (format!("{d}/"), None))
        .chain(
            files
                .iter()
                .map(|(p, bytes)| (format!("{root}/{p}"), Some(*bytes))),
        )
        .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));

    let gz = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::default());
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    for (path, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        match data {
            None => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                tar.append_data(&mut header, &path, std::io::empty())?;
            }
            Some(bytes) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                header.set_size(bytes.len() as u64);
                tar.append_data(&mut header, &path, bytes)?;
            }
        }
    }
    let mut gz = tar.into_inner()?;
    gz.flush()?;
    gz.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn sorted_fixed_and_byte_identical() {
        let long = format!("rows/{}/hops.txt", "x".repeat(120));
        let files: Vec<(&str, &[u8])> = vec![
            ("b.txt", b"b"),
            ("SUMMARY.md", b"# s\n"),
            ("rows/r1/hops.txt", b"h"),
            (long.as_str(), b"long"),
        ];
        let one = tar_gz("bundle", &files).unwrap();
        let mut reversed = files.clone();
        reversed.reverse();
        assert_eq!(one, tar_gz("bundle", &reversed).unwrap());
        // gzip: no name flag, mtime 0.
        assert_eq!(&one[..3], &[0x1f, 0x8b, 8]);
        assert_eq!(one[3] & 0x08, 0, "FNAME set");
        assert_eq!(&one[4..8], &[0, 0, 0, 0]);
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&one[..])
            .read_to_end(&mut raw)
            .unwrap();
        let mut archive = tar::Archive::new(&raw[..]);
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let h = entry.header();
            assert_eq!(h.mtime().unwrap(), 0);
            assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
            let path = entry.path().unwrap().display().to_string();
            let mode = h.mode().unwrap();
            assert_eq!(
                mode,
                if path.ends_with('/') { 0o755 } else { 0o644 },
                "{path}"
            );
            let mut body = Vec::new();
            entry.read_to_end(&mut body).unwrap();
            seen.push(path);
        }
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(seen, sorted);
        assert!(seen.contains(&format!("bundle/{long}")));
        assert!(seen.contains(&"bundle/rows/r1/".to_string()));
    }
}
