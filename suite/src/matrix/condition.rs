//! The `when` language of matrix overrides: fact comparisons joined by `and`,
//! `or`, `not` and parentheses, type-checked against the contract's fact kinds
//! when the matrix is loaded, so a typo fails the load instead of never matching.
//!
//! ```text
//! condition  := or
//! or         := and ("or" and)*
//! and        := unary ("and" unary)*
//! unary      := "not" unary | primary
//! primary    := "(" condition ")" | FACT (OP value)?
//! value      := 6.6 | 6.15-rc6 | 16384 | "text" | 'text' | true | false
//! ```
//!
//! `not` binds tighter than `and`, which binds tighter than `or`. A bare fact
//! (`tcx`) means `tcx == true` and is only allowed for boolean facts.
//!
//! Unmeasured facts: a comparison on a fact the probe could not measure is
//! *unknown*, not false, and unknown survives `not` (three-valued logic:
//! `false and unknown` is false, `true or unknown` is true). A `when` holds only
//! when it is definitely true. Treating unknown as plain false would let
//! `not helper.redirect_peer` match on a probe that never measured helpers and
//! flip an expectation on no evidence; with unknown, the entry's base
//! expectation stands and the verdict names the facts that were missing.

use conformance_contract::facts::{all_fact_keys, fact_kind};
use conformance_contract::{FactKind, FactValue, Facts, KernelVersion};
use std::fmt;

/// A parsed, type-checked `when` condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    text: String,
    expr: Expr,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Compare {
        fact: String,
        op: Op,
        value: FactValue,
    },
}

/// Comparison operators; ordering ones only apply to versions and numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn is_ordering(self) -> bool {
        !matches!(self, Op::Eq | Op::Ne)
    }

    fn holds(self, ord: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            Op::Eq => ord == Equal,
            Op::Ne => ord != Equal,
            Op::Lt => ord == Less,
            Op::Le => ord != Greater,
            Op::Gt => ord == Greater,
            Op::Ge => ord != Less,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        })
    }
}

/// Kleene truth value: `Unknown` when a fact the result depends on was not measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truth {
    True,
    False,
    Unknown,
}

impl Truth {
    fn not(self) -> Truth {
        match self {
            Truth::True => Truth::False,
            Truth::False => Truth::True,
            Truth::Unknown => Truth::Unknown,
        }
    }
    fn and(self, other: Truth) -> Truth {
        match (self, other) {
            (Truth::False, _) | (_, Truth::False) => Truth::False,
            (Truth::True, Truth::True) => Truth::True,
            _ => Truth::Unknown,
        }
    }
    fn or(self, other: Truth) -> Truth {
        match (self, other) {
            (Truth::True, _) | (_, Truth::True) => Truth::True,
            (Truth::False, Truth::False) => Truth::False,
            _ => Truth::Unknown,
        }
    }
}

/// The result of evaluating a condition against facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub truth: Truth,
    /// Facts that were not measured and left the result `Unknown`; empty otherwise.
    pub unmeasured: Vec<String>,
}

impl Evaluation {
    pub fn holds(&self) -> bool {
        self.truth == Truth::True
    }
}

/// What is wrong with a condition, and where (0-based character index).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at character {} of the condition: {message}", .at + 1)]
pub struct ConditionError {
    pub kind: ConditionErrorKind,
    pub at: usize,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionErrorKind {
    /// Not a well-formed expression (missing operand, unbalanced parenthesis, stray token).
    Syntax,
    /// A fact key the contract does not define.
    UnknownFact,
    /// An operator the fact's type does not support (`arch < "x"`), or a bare non-boolean fact.
    Operator,
    /// A value of the wrong type or shape for the fact (`kernel >= "6.6"`, `page_size == 4k`).
    Value,
}

impl Condition {
    /// Parses and type-checks `text` against the contract's fact keys.
    pub fn parse(text: &str) -> Result<Condition, ConditionError> {
        let tokens = tokenize(text)?;
        let mut parser = Parser { tokens, pos: 0 };
        if matches!(parser.peek().tok, Tok::End) {
            return Err(syntax(0, "empty condition"));
        }
        let expr = parser.or()?;
        let next = parser.peek();
        if !matches!(next.tok, Tok::End) {
            return Err(syntax(
                next.at,
                format!(
                    "unexpected {} after a complete condition (missing `and` or `or`?)",
                    next.tok
                ),
            ));
        }
        Ok(Condition {
            text: text.to_string(),
            expr,
        })
    }

    /// The condition as written in the matrix.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Evaluates against measured facts; see the module doc for unmeasured facts.
    pub fn evaluate(&self, facts: &Facts) -> Evaluation {
        let mut unmeasured = Vec::new();
        let truth = eval(&self.expr, facts, &mut unmeasured);
        if truth != Truth::Unknown {
            unmeasured.clear();
        }
        Evaluation { truth, unmeasured }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Multi-line TOML strings read better on one line in reports.
        let mut first = true;
        for word in self.text.split_whitespace() {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(word)?;
            first = false;
        }
        Ok(())
    }
}

fn eval(expr: &Expr, facts: &Facts, unmeasured: &mut Vec<String>) -> Truth {
    match expr {
        // Both sides are always evaluated so every missing fact gets named.
        Expr::Or(a, b) => eval(a, facts, unmeasured).or(eval(b, facts, unmeasured)),
        Expr::And(a, b) => eval(a, facts, unmeasured).and(eval(b, facts, unmeasured)),
        Expr::Not(a) => eval(a, facts, unmeasured).not(),
        Expr::Compare { fact, op, value } => {
            let Some(actual) = facts.get(fact) else {
                if !unmeasured.contains(fact) {
                    unmeasured.push(fact.clone());
                }
                return Truth::Unknown;
            };
            let ord = match (&actual, value) {
                (FactValue::Version(a), FactValue::Version(b)) => a.cmp(b),
                (FactValue::Number(a), FactValue::Number(b)) => a.cmp(b),
                (FactValue::Text(a), FactValue::Text(b)) => a.cmp(b),
                (FactValue::Bool(a), FactValue::Bool(b)) => a.cmp(b),
                // Kinds are checked at parse time; a mismatch means the contract
                // changed a fact's type under us: say "unknown" rather than guess.
                _ => return Truth::Unknown,
            };
            if op.holds(ord) {
                Truth::True
            } else {
                Truth::False
            }
        }
    }
}

fn syntax(at: usize, message: impl Into<String>) -> ConditionError {
    ConditionError {
        kind: ConditionErrorKind::Syntax,
        at,
        message: message.into(),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    Op(Op),
    /// Fact key or keyword (`and`, `or`, `not`, `true`, `false`).
    Word(String),
    /// Starts with a digit: a version or a number.
    Literal(String),
    Str(String),
    End,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::LParen => f.write_str("`(`"),
            Tok::RParen => f.write_str("`)`"),
            Tok::Op(op) => write!(f, "`{op}`"),
            Tok::Word(w) | Tok::Literal(w) => write!(f, "`{w}`"),
            Tok::Str(s) => write!(f, "\"{s}\""),
            Tok::End => f.write_str("the end of the condition"),
        }
    }
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    at: usize,
}

fn tokenize(text: &str) -> Result<Vec<Token>, ConditionError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        let take_while = |i: &mut usize, ok: &dyn Fn(char) -> bool| {
            let from = *i;
            while *i < chars.len() && ok(chars[*i]) {
                *i += 1;
            }
            chars[from..*i].iter().collect::<String>()
        };
        let tok = match c {
            _ if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => {
                i += 1;
                Tok::LParen
            }
            ')' => {
                i += 1;
                Tok::RParen
            }
            '=' | '!' | '<' | '>' => {
                let two = chars.get(i + 1) == Some(&'=');
                i += if two { 2 } else { 1 };
                Tok::Op(match (c, two) {
                    ('=', true) => Op::Eq,
                    ('!', true) => Op::Ne,
                    ('<', true) => Op::Le,
                    ('>', true) => Op::Ge,
                    ('<', false) => Op::Lt,
                    ('>', false) => Op::Gt,
                    ('=', false) => return Err(syntax(start, "`=` is not an operator: use `==`")),
                    _ => return Err(syntax(start, "`!` is not an operator: use `not` or `!=`")),
                })
            }
            '"' | '\'' => {
                i += 1;
                let body = take_while(&mut i, &|ch| ch != c);
                if i >= chars.len() {
                    return Err(syntax(
                        start,
                        format!("unterminated string (missing closing {c})"),
                    ));
                }
                i += 1;
                Tok::Str(body)
            }
            // One token up to the next space, parenthesis or operator, so that
            // `16k` or `6.1.139x` is rejected whole instead of split in two.
            _ if c.is_ascii_digit() => Tok::Literal(take_while(&mut i, &|ch| {
                ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | '_')
            })),
            '&' | '|' => {
                let word = if c == '&' { "and" } else { "or" };
                return Err(syntax(
                    start,
                    format!("`{c}` is not an operator: use `{word}`"),
                ));
            }
            _ if c.is_alphabetic() || c == '_' => Tok::Word(take_while(&mut i, &|ch| {
                ch.is_alphanumeric() || ch == '_' || ch == '.'
            })),
            _ => return Err(syntax(start, format!("unexpected character `{c}`"))),
        };
        tokens.push(Token { tok, at: start });
    }
    tokens.push(Token {
        tok: Tok::End,
        at: chars.len(),
    });
    Ok(tokens)
}

const KEYWORDS: &[&str] = &["and", "or", "not", "true", "false"];

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.pos]
    }

    fn next(&mut self) -> Token {
        let t = self.tokens[self.pos].clone();
        if !matches!(t.tok, Tok::End) {
            self.pos += 1;
        }
        t
    }

    fn at_word(&self, word: &str) -> bool {
        matches!(&self.peek().tok, Tok::Word(w) if w == word)
    }

    fn or(&mut self) -> Result<Expr, ConditionError> {
        let mut left = self.and()?;
        while self.at_word("or") {
            self.next();
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ConditionError> {
        let mut left = self.unary()?;
        while self.at_word("and") {
            self.next();
            left = Expr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, ConditionError> {
        if self.at_word("not") {
            self.next();
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, ConditionError> {
        let t = self.next();
        match t.tok {
            Tok::LParen => {
                let inner = self.or()?;
                let close = self.next();
                if close.tok != Tok::RParen {
                    return Err(syntax(
                        close.at,
                        format!(
                            "expected `)` to close the `(` at character {}, found {}",
                            t.at + 1,
                            close.tok
                        ),
                    ));
                }
                Ok(inner)
            }
            Tok::Word(ref key) if !KEYWORDS.contains(&key.as_str()) => {
                self.comparison(key.clone(), t.at)
            }
            other => Err(syntax(
                t.at,
                format!("expected a fact, `not` or `(`, found {other}"),
            )),
        }
    }

    fn comparison(&mut self, fact: String, at: usize) -> Result<Expr, ConditionError> {
        let Some(kind) = fact_kind(&fact) else {
            return Err(ConditionError {
                kind: ConditionErrorKind::UnknownFact,
                at,
                message: format!(
                    "unknown fact `{fact}` (known: {})",
                    all_fact_keys().join(", ")
                ),
            });
        };
        let op = match self.peek().tok {
            Tok::Op(op) => op,
            _ if kind == FactKind::Bool => {
                return Ok(Expr::Compare {
                    fact,
                    op: Op::Eq,
                    value: FactValue::Bool(true),
                });
            }
            _ => {
                return Err(ConditionError {
                    kind: ConditionErrorKind::Operator,
                    at,
                    message: format!(
                        "`{fact}` is a {} fact: compare it (e.g. {}) instead of using it alone",
                        kind_name(kind),
                        example(&fact, kind)
                    ),
                });
            }
        };
        let op_at = self.next().at;
        if op.is_ordering() && matches!(kind, FactKind::Text | FactKind::Bool) {
            return Err(ConditionError {
                kind: ConditionErrorKind::Operator,
                at: op_at,
                message: format!(
                    "`{op}` does not apply to the {} fact `{fact}` (use == or !=)",
                    kind_name(kind)
                ),
            });
        }
        let v = self.next();
        let value = literal(kind, &v).ok_or_else(|| {
            let message = if v.tok == Tok::End {
                format!(
                    "expected a value after `{op}` (e.g. {})",
                    example(&fact, kind)
                )
            } else {
                format!(
                    "expected a {} value for `{fact}`, found {} (e.g. {})",
                    kind_name(kind),
                    v.tok,
                    example(&fact, kind)
                )
            };
            let kind = if v.tok == Tok::End {
                ConditionErrorKind::Syntax
            } else {
                ConditionErrorKind::Value
            };
            ConditionError {
                kind,
                at: v.at,
                message,
            }
        })?;
        Ok(Expr::Compare { fact, op, value })
    }
}

/// The literal as a value of `kind`, or `None` if it has the wrong type or shape.
fn literal(kind: FactKind, token: &Token) -> Option<FactValue> {
    match (kind, &token.tok) {
        (FactKind::Version, Tok::Literal(s)) => version_literal(s).map(FactValue::Version),
        (FactKind::Number, Tok::Literal(s)) => s.parse().ok().map(FactValue::Number),
        (FactKind::Text, Tok::Str(s)) => Some(FactValue::Text(s.clone())),
        (FactKind::Bool, Tok::Word(w)) if w == "true" => Some(FactValue::Bool(true)),
        (FactKind::Bool, Tok::Word(w)) if w == "false" => Some(FactValue::Bool(false)),
        _ => None,
    }
}

/// `major.minor[.patch][-rcN]`, nothing more: `KernelVersion::parse_release` is
/// lenient with `uname -r` suffixes, a matrix should not be.
fn version_literal(s: &str) -> Option<KernelVersion> {
    let nums = match s.split_once("-rc") {
        Some((nums, rc)) if !rc.is_empty() && rc.chars().all(|c| c.is_ascii_digit()) => nums,
        Some(_) => return None,
        None => s,
    };
    let parts: Vec<&str> = nums.split('.').collect();
    let well_formed = (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    if well_formed {
        KernelVersion::parse_release(s)
    } else {
        None
    }
}

fn kind_name(kind: FactKind) -> &'static str {
    match kind {
        FactKind::Version => "version",
        FactKind::Text => "text",
        FactKind::Number => "number",
        FactKind::Bool => "boolean",
    }
}

fn example(fact: &str, kind: FactKind) -> String {
    match kind {
        FactKind::Version => format!("`{fact} >= 6.6`"),
        FactKind::Text => format!("`{fact} == \"...\"`"),
        FactKind::Number => format!("`{fact} == 16384`"),
        FactKind::Bool => format!("`{fact}` or `not {fact}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conformance_contract::KernelVersion;

    fn facts_with_kernel(v: &str) -> Facts {
        let mut f = Facts::example();
        f.kernel = Some(v.parse().unwrap());
        f
    }

    fn holds(cond: &str, facts: &Facts) -> bool {
        Condition::parse(cond)
            .unwrap_or_else(|e| panic!("{cond}: {e}"))
            .evaluate(facts)
            .holds()
    }

    fn err(cond: &str) -> ConditionError {
        Condition::parse(cond).expect_err(cond)
    }

    #[test]
    fn comparisons_on_each_kind() {
        let f = Facts::example(); // 6.18.44, x86_64, 4096, tcx, not nested, bpffs private
        assert!(holds("kernel >= 6.6", &f));
        assert!(holds(
            "kernel > 6.18.43 and kernel < 6.18.45 and kernel <= 6.18.44",
            &f
        ));
        assert!(!holds("kernel == 6.18", &f), "6.18 means 6.18.0");
        assert!(holds("kernel != 6.18", &f));
        assert!(holds("arch == \"x86_64\"", &f));
        assert!(holds("arch != 'aarch64'", &f));
        assert!(holds("page_size == 4096 and page_size < 16384", &f));
        assert!(holds("bpffs.propagation != \"shared\"", &f));
        assert!(holds("tcx", &f));
        assert!(holds("not nested", &f));
        assert!(holds("tcx == true and nested == false", &f));
        assert!(holds("helper.redirect_peer", &f));
    }

    #[test]
    fn precedence_not_over_and_over_or() {
        let f = Facts::example();
        // or binds loosest: true or (false and false)
        assert!(holds("tcx or nested and netkit", &f));
        // parentheses change it: (true or false) and false
        assert!(!holds("(tcx or nested) and netkit", &f));
        // not binds tightest: (not nested) and tcx
        assert!(holds("not nested and tcx", &f));
        // not applies to the parenthesised group
        assert!(!holds("not (nested or tcx)", &f));
        assert!(holds("not not tcx", &f));
    }

    #[test]
    fn version_ranges_of_the_scrub_fix() {
        let unfixed = "(kernel >= 5.10 and kernel < 6.1.139) or (kernel >= 6.2-rc1 and kernel < 6.6.91) \
                       or (kernel >= 6.7-rc1 and kernel < 6.12.29) or (kernel >= 6.13-rc1 and kernel < 6.14.7) \
                       or (kernel >= 6.15-rc1 and kernel < 6.15-rc6)";
        for v in [
            "5.10.0", "6.1.138", "6.6.90", "6.7-rc3", "6.12.28", "6.13.0", "6.14.6", "6.15-rc5",
        ] {
            assert!(holds(unfixed, &facts_with_kernel(v)), "{v} is unfixed");
        }
        for v in [
            "5.4.0", "6.1.139", "6.6.91", "6.12.29", "6.14.7", "6.15-rc6", "6.15.0", "6.18.44",
        ] {
            assert!(
                !holds(unfixed, &facts_with_kernel(v)),
                "{v} is fixed or unaffected"
            );
        }
    }

    #[test]
    fn unmeasured_fact_is_unknown_and_named() {
        let mut f = Facts::example();
        f.kernel = None;
        f.helpers.clear();
        let c = Condition::parse("kernel < 6.1.139").unwrap();
        let e = c.evaluate(&f);
        assert_eq!(e.truth, Truth::Unknown);
        assert!(!e.holds());
        assert_eq!(e.unmeasured, vec!["kernel".to_string()]);
        // `not` cannot turn a missing measurement into a match.
        let e = Condition::parse("not helper.redirect_peer")
            .unwrap()
            .evaluate(&f);
        assert_eq!(
            (e.truth, e.unmeasured.as_slice()),
            (Truth::Unknown, &["helper.redirect_peer".to_string()][..])
        );
        // A definite side decides, and then nothing is reported missing.
        let e = Condition::parse("kernel < 6.1 and nested")
            .unwrap()
            .evaluate(&f);
        assert_eq!((e.truth, e.unmeasured.len()), (Truth::False, 0));
        let e = Condition::parse("kernel < 6.1 or tcx")
            .unwrap()
            .evaluate(&f);
        assert_eq!((e.truth, e.unmeasured.len()), (Truth::True, 0));
    }

    #[test]
    fn rejects_unknown_facts_with_position_and_list() {
        let e = err("tcx and kernal >= 6.6");
        assert_eq!(e.kind, ConditionErrorKind::UnknownFact);
        assert_eq!(e.at, 8);
        assert!(
            e.message.contains("unknown fact `kernal`")
                && e.message.contains("known: kernel, arch"),
            "{}",
            e.message
        );
        assert_eq!(err("helper.nope").kind, ConditionErrorKind::UnknownFact);
    }

    #[test]
    fn rejects_wrong_operator_for_type() {
        let e = err("arch < \"x\"");
        assert_eq!((e.kind, e.at), (ConditionErrorKind::Operator, 5));
        assert!(e.message.contains("use == or !="), "{}", e.message);
        assert_eq!(err("tcx >= true").kind, ConditionErrorKind::Operator);
        let e = err("kernel and tcx");
        assert_eq!((e.kind, e.at), (ConditionErrorKind::Operator, 0));
        assert!(e.message.contains("`kernel >= 6.6`"), "{}", e.message);
    }

    #[test]
    fn rejects_values_of_the_wrong_type() {
        for (cond, at) in [
            ("kernel >= \"6.6\"", 10),
            ("kernel >= 6", 10),
            ("kernel >= 6.1.2.3", 10),
            ("kernel >= 6.1.139x", 10),
            ("page_size == 16k", 13),
            ("arch == aarch64", 8),
            ("tcx == yes", 7),
        ] {
            let e = err(cond);
            assert!(
                matches!(
                    e.kind,
                    ConditionErrorKind::Value | ConditionErrorKind::Syntax
                ),
                "{cond}: {e:?}"
            );
            assert_eq!(e.at, at, "{cond}: {e}");
        }
        assert_eq!(err("kernel >= \"6.6\"").kind, ConditionErrorKind::Value);
    }

    #[test]
    fn rejects_malformed_expressions_saying_where() {
        let cases = [
            ("", 0, "empty condition"),
            ("kernel >=", 9, "expected a value after `>=`"),
            ("tcx and", 7, "expected a fact"),
            (
                "(tcx or nested",
                14,
                "expected `)` to close the `(` at character 1",
            ),
            ("tcx)", 3, "unexpected `)`"),
            ("tcx nested", 4, "missing `and` or `or`"),
            ("kernel = 6.6", 7, "use `==`"),
            ("arch == \"x86_64", 8, "unterminated string"),
            ("tcx && nested", 4, "use `and`"),
            ("tcx || nested", 4, "use `or`"),
            ("! tcx", 0, "use `not` or `!=`"),
            ("tcx $", 4, "unexpected character `$`"),
        ];
        for (cond, at, needle) in cases {
            let e = err(cond);
            assert_eq!(e.kind, ConditionErrorKind::Syntax, "{cond}: {e}");
            assert_eq!(e.at, at, "{cond}: {e}");
            assert!(e.message.contains(needle), "{cond}: {e}");
        }
        assert_eq!(
            err("kernel >=").to_string(),
            "at character 10 of the condition: expected a value after `>=` (e.g. `kernel >= 6.6`)"
        );
    }

    #[test]
    fn display_flattens_whitespace() {
        let c = Condition::parse("kernel < 6.1.139\n  or tcx").unwrap();
        assert_eq!(c.to_string(), "kernel < 6.1.139 or tcx");
        assert_eq!(c.text(), "kernel < 6.1.139\n  or tcx");
        assert_eq!(
            version_literal("6.15-rc6"),
            Some(KernelVersion {
                major: 6,
                minor: 15,
                patch: 0,
                rc: Some(6)
            })
        );
        assert_eq!(version_literal("6.15-rc"), None);
    }
}
