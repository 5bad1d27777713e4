//! Generated sections of hand-written Markdown (BENCHMARKS.md, README.md): the
//! text between `<!-- KIND:NAME begin -->` and `<!-- KIND:NAME end -->` is a
//! tool's, everything else the author's.

pub fn markers(kind: &str, name: &str) -> (String, String) {
    (
        format!("<!-- {kind}:{name} begin -->"),
        format!("<!-- {kind}:{name} end -->"),
    )
}

/// `text` with the section (markers included) replaced by `section`, which
/// carries its own markers.
pub fn replace(text: &str, kind: &str, name: &str, section: &str) -> Result<String, String> {
    let (begin, end) = markers(kind, name);
    let (Some(a), Some(b)) = (text.find(&begin), text.find(&end)) else {
        return Err(format!("no {begin} ... {end} section"));
    };
    if b < a {
        return Err(format!("{end} comes before {begin}"));
    }
    Ok(format!(
        "{}{}{}",
        &text[..a],
        section.trim_end(),
        &text[b + end.len()..]
    ))
}

/// `body` between the section's markers.
pub fn wrap(kind: &str, name: &str, body: &str) -> String {
    let (begin, end) = markers(kind, name);
    format!("{begin}\n{}\n{end}\n", body.trim_end())
}
