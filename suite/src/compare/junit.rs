//! The comparison as JUnit XML: one `<testsuite>` per instance, one
//! `<testcase>` per compared row. A new failure is a `<failure>` (with the
//! notes and the evidence that moved), a timing slowdown too with
//! `--fail-on-slower`; a removed row is `<skipped>`; every other row passes,
//! its class in `<system-out>`. Valid against the Jenkins `junit-10.xsd`, like
//! the run's own JUnit (no `skipped` attribute on `<testsuites>`).

use super::{Class, Comparison, Direction, Row, side_cell};
use crate::report::{xml_attr as attr, xml_text as text};
use std::fmt::Write;

pub fn render_junit(c: &Comparison) -> String {
    let mut suites: Vec<(&str, Vec<&Row>)> = Vec::new();
    for r in &c.rows {
        match suites.iter_mut().find(|(i, _)| *i == r.instance) {
            Some((_, rows)) => rows.push(r),
            None => suites.push((&r.instance, vec![r])),
        }
    }
    let failed = |r: &Row| {
        r.class.got_worse()
            || (c.fail_on_slower && r.timing.is_some_and(|t| t.direction == Direction::Slower))
    };
    let count = |rows: &[&Row], f: &dyn Fn(&Row) -> bool| rows.iter().filter(|r| f(r)).count();
    let skipped = |r: &Row| r.class == Class::Removed;
    let all: Vec<&Row> = c.rows.iter().collect();

    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"cilium-conformance compare {} → {}\" tests=\"{}\" failures=\"{}\" errors=\"0\">",
        attr(&c.baseline.run_id),
        attr(&c.current.run_id),
        all.len(),
        count(&all, &failed),
    );
    for (instance, rows) in &suites {
        let _ = writeln!(
            x,
            "  <testsuite name=\"compare {}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\">",
            attr(instance),
            rows.len(),
            count(rows, &failed),
            count(rows, &skipped)
        );
        for r in rows {
            testcase(&mut x, r, failed(r));
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}

fn testcase(x: &mut String, r: &Row, failed: bool) {
    let secs = r.current.as_ref().map_or(0.0, |s| s.duration_ms) / 1000.0;
    let secs = if secs.is_finite() && secs > 0.0 {
        secs
    } else {
        0.0
    };
    let _ = write!(
        x,
        "    <testcase name=\"{}\" classname=\"{}\" time=\"{secs:.3}\"",
        attr(&r.name()),
        attr(&r.check),
    );
    let summary = format!(
        "{}: {} → {}",
        r.class.words(),
        side_cell(&r.baseline),
        side_cell(&r.current)
    );
    let body = details(r);
    if failed {
        let kind = if r.class.got_worse() {
            r.class.as_str()
        } else {
            "slower"
        };
        let _ = writeln!(
            x,
            ">\n      <failure type=\"{kind}\" message=\"{}\">{}</failure>\n    </testcase>",
            attr(&summary),
            text(&body)
        );
    } else if r.class == Class::Removed {
        let _ = writeln!(
            x,
            ">\n      <skipped message=\"{}\"/>\n    </testcase>",
            attr(&format!("{summary} (only in the baseline)"))
        );
    } else {
        let _ = writeln!(
            x,
            ">\n      <system-out>{}</system-out>\n    </testcase>",
            text(&format!("{summary}\n{body}"))
        );
    }
}

fn details(r: &Row) -> String {
    let mut s = String::new();
    for n in &r.notes {
        let _ = writeln!(s, "{n}");
    }
    for (side, reason) in r.reasons() {
        let _ = writeln!(s, "{side}: {reason}");
    }
    for e in &r.evidence {
        let _ = writeln!(s, "{}", e.line());
    }
    if let Some(t) = &r.timing {
        let _ = writeln!(s, "timing {}", t.text());
    }
    s.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(attr("a\"<b>&\n\u{1}"), "a&quot;&lt;b&gt;&amp;&#10;\u{fffd}");
        assert_eq!(text("x\ny"), "x\ny");
    }
}
