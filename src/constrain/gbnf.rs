//! llama.cpp's GBNF grammar format, rewritten into the Lark dialect llguidance parses.
//!
//! GBNF: `name ::= alternatives`, `"literal"` (escapes `\n \r \t \\ \" \[ \] \xHH \uHHHH
//! \UHHHHHHHH`), character classes `[a-z]` / `[^"\\]`, `.` (any character), grouping `( )`,
//! alternation `|`, repetition `* + ?` and `{m}`, `{m,}`, `{m,n}`, `{,n}`, `#` comments; `root`
//! is the start rule. The output has one Lark rule per GBNF rule plus `start: root`; literals
//! become JSON strings, classes and `.` single-character regexes. Names are mapped into Lark's
//! lowercase rule names (`myRule` → `my_rule`; GBNF names have no `_`, so this cannot collide).

use std::fmt::Write;

#[derive(Debug, PartialEq)]
enum Tok {
    Name(String),
    Define,
    Str(String),
    /// `[...]`: negated, then (first, last) character ranges.
    Class(bool, Vec<(char, char)>),
    Dot,
    LParen,
    RParen,
    Bar,
    Op(char),
    /// `{m,n}` as Lark writes it.
    Repeat(String),
}

/// A position in the source for error messages: 1-based line and column.
fn at(src: &str, byte: usize) -> String {
    let before = &src[..byte.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {col}")
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-'
}

/// Reads one (possibly escaped) character of a literal or class at `chars[*i]`.
fn read_char(src: &str, chars: &[(usize, char)], i: &mut usize) -> Result<char, String> {
    let (pos, c) = chars[*i];
    *i += 1;
    if c != '\\' {
        return Ok(c);
    }
    let Some(&(_, e)) = chars.get(*i) else {
        return Err(format!("GBNF: a lone '\\' at the end ({})", at(src, pos)));
    };
    *i += 1;
    let hex = |n: usize, i: &mut usize| -> Result<char, String> {
        let digits: String = chars.iter().skip(*i).take(n).map(|x| x.1).collect();
        if digits.len() != n || !digits.chars().all(|d| d.is_ascii_hexdigit()) {
            return Err(format!(
                "GBNF: '\\{e}' needs {n} hex digits ({})",
                at(src, pos)
            ));
        }
        *i += n;
        let v = u32::from_str_radix(&digits, 16).map_err(|e| e.to_string())?;
        char::from_u32(v)
            .ok_or_else(|| format!("GBNF: \\{e}{digits} is not a character ({})", at(src, pos)))
    };
    Ok(match e {
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        '\\' | '"' | '[' | ']' | '-' | '^' => e,
        'x' => hex(2, i)?,
        'u' => hex(4, i)?,
        'U' => hex(8, i)?,
        other => {
            return Err(format!(
                "GBNF: unknown escape '\\{other}' ({})",
                at(src, pos)
            ))
        }
    })
}

fn lex(src: &str) -> Result<Vec<(usize, Tok)>, String> {
    let chars: Vec<(usize, char)> = src.char_indices().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (pos, c) = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '#' => {
                while i < chars.len() && chars[i].1 != '\n' {
                    i += 1;
                }
            }
            ':' => {
                if chars.get(i + 1).map(|x| x.1) == Some(':')
                    && chars.get(i + 2).map(|x| x.1) == Some('=')
                {
                    out.push((pos, Tok::Define));
                    i += 3;
                } else {
                    return Err(format!("GBNF: expected '::=' ({})", at(src, pos)));
                }
            }
            '"' => {
                i += 1;
                let mut s = String::new();
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(format!(
                                "GBNF: unterminated string literal ({})",
                                at(src, pos)
                            ))
                        }
                        Some(&(_, '"')) => {
                            i += 1;
                            break;
                        }
                        Some(_) => s.push(read_char(src, &chars, &mut i)?),
                    }
                }
                out.push((pos, Tok::Str(s)));
            }
            '[' => {
                i += 1;
                let negated = chars.get(i).map(|x| x.1) == Some('^');
                if negated {
                    i += 1;
                }
                let mut ranges = Vec::new();
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(format!(
                                "GBNF: unterminated character class ({})",
                                at(src, pos)
                            ))
                        }
                        Some(&(_, ']')) => {
                            i += 1;
                            break;
                        }
                        Some(_) => {
                            let first = read_char(src, &chars, &mut i)?;
                            let mut last = first;
                            if chars.get(i).map(|x| x.1) == Some('-')
                                && chars.get(i + 1).is_some_and(|x| x.1 != ']')
                            {
                                i += 1;
                                last = read_char(src, &chars, &mut i)?;
                                if last < first {
                                    return Err(format!(
                                        "GBNF: character range {first:?}-{last:?} is reversed ({})",
                                        at(src, pos)
                                    ));
                                }
                            }
                            ranges.push((first, last));
                        }
                    }
                }
                if ranges.is_empty() && !negated {
                    return Err(format!("GBNF: empty character class ({})", at(src, pos)));
                }
                out.push((pos, Tok::Class(negated, ranges)));
            }
            '.' => {
                out.push((pos, Tok::Dot));
                i += 1;
            }
            '(' => {
                out.push((pos, Tok::LParen));
                i += 1;
            }
            ')' => {
                out.push((pos, Tok::RParen));
                i += 1;
            }
            '|' => {
                out.push((pos, Tok::Bar));
                i += 1;
            }
            '*' | '+' | '?' => {
                out.push((pos, Tok::Op(c)));
                i += 1;
            }
            '{' => {
                let mut body = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        Some(&(_, '}')) => {
                            i += 1;
                            break;
                        }
                        Some(&(_, d)) if d.is_ascii_digit() || d == ',' => {
                            body.push(d);
                            i += 1;
                        }
                        Some(&(_, w)) if w == ' ' || w == '\t' => i += 1,
                        _ => {
                            return Err(format!(
                                "GBNF: a repetition is {{m}}, {{m,}}, {{m,n}} or {{,n}} ({})",
                                at(src, pos)
                            ))
                        }
                    }
                }
                let ok = match body.split_once(',') {
                    None => !body.is_empty(),
                    Some((a, b)) => !(b.contains(',') || a.is_empty() && b.is_empty()),
                };
                if !ok {
                    return Err(format!(
                        "GBNF: a repetition is {{m}}, {{m,}}, {{m,n}} or {{,n}} ({})",
                        at(src, pos)
                    ));
                }
                out.push((pos, Tok::Repeat(format!("{{{body}}}"))));
            }
            c if is_name_char(c) => {
                let mut name = String::new();
                while let Some(&(_, c)) = chars.get(i) {
                    if !is_name_char(c) {
                        break;
                    }
                    name.push(c);
                    i += 1;
                }
                out.push((pos, Tok::Name(name)));
            }
            other => return Err(format!("GBNF: unexpected {other:?} ({})", at(src, pos))),
        }
    }
    Ok(out)
}

/// A GBNF rule name as a Lark rule name (lowercase letters, digits, `_`, `-`; starting with a
/// lowercase letter).
fn lark_name(name: &str) -> String {
    let mut s = String::from("g_");
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            s.push('_');
            s.push(c.to_ascii_lowercase());
        } else {
            s.push(c);
        }
    }
    s
}

/// One character in a regex class, escaped unless it is an ASCII letter or digit.
fn class_char(out: &mut String, c: char) {
    if c.is_ascii_alphanumeric() {
        out.push(c);
    } else {
        let _ = write!(out, "\\x{{{:x}}}", c as u32);
    }
}

/// Rewrites a GBNF grammar as Lark (see the module comment). Errors name the line and column.
pub fn gbnf_to_lark(src: &str) -> Result<String, String> {
    let toks = lex(src)?;
    if toks.is_empty() {
        return Err("GBNF: the grammar is empty (it needs a 'root ::= ...' rule)".into());
    }
    let mut out = String::from("start: g_root\n");
    let mut defined = std::collections::HashSet::new();
    let mut used: Vec<(String, usize)> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let (pos, Tok::Name(name)) = &toks[i] else {
            return Err(format!(
                "GBNF: expected a rule name ({})",
                at(src, toks[i].0)
            ));
        };
        if !matches!(toks.get(i + 1), Some((_, Tok::Define))) {
            return Err(format!(
                "GBNF: expected '::=' after '{name}' ({})",
                at(src, *pos)
            ));
        }
        if !defined.insert(name.clone()) {
            return Err(format!(
                "GBNF: rule '{name}' is defined twice ({})",
                at(src, *pos)
            ));
        }
        i += 2;
        // The body runs up to the next `name ::=`.
        let mut end = i;
        while end < toks.len()
            && !(matches!(toks[end].1, Tok::Name(_))
                && matches!(toks.get(end + 1), Some((_, Tok::Define))))
        {
            end += 1;
        }
        let _ = write!(out, "{}:", lark_name(name));
        let mut depth = 0i32;
        let mut empty_seq = true;
        let mut prev_atom = false;
        for (p, t) in &toks[i..end] {
            match t {
                Tok::Name(n) => {
                    used.push((n.clone(), *p));
                    let _ = write!(out, " {}", lark_name(n));
                }
                Tok::Str(s) => {
                    let js = serde_json::to_string(s).map_err(|e| e.to_string())?;
                    let _ = write!(out, " {js}");
                }
                Tok::Class(neg, ranges) => {
                    let mut rx = String::from(" /[");
                    if *neg {
                        rx.push('^');
                    }
                    for &(a, b) in ranges {
                        class_char(&mut rx, a);
                        if b != a {
                            rx.push('-');
                            class_char(&mut rx, b);
                        }
                    }
                    rx.push_str("]/");
                    out.push_str(&rx);
                }
                Tok::Dot => out.push_str(r" /(?s:.)/"),
                Tok::LParen => {
                    depth += 1;
                    out.push_str(" (");
                }
                Tok::RParen => {
                    depth -= 1;
                    if depth < 0 {
                        return Err(format!("GBNF: unmatched ')' ({})", at(src, *p)));
                    }
                    if empty_seq {
                        out.push_str(" \"\"");
                    }
                    out.push_str(" )");
                }
                Tok::Bar => {
                    if empty_seq {
                        out.push_str(" \"\"");
                    }
                    out.push_str(" |");
                }
                Tok::Op(c) => {
                    if !prev_atom {
                        return Err(format!(
                            "GBNF: '{c}' has nothing to repeat ({})",
                            at(src, *p)
                        ));
                    }
                    out.push(*c);
                }
                Tok::Repeat(r) => {
                    if !prev_atom {
                        return Err(format!(
                            "GBNF: '{r}' has nothing to repeat ({})",
                            at(src, *p)
                        ));
                    }
                    out.push_str(r);
                }
                Tok::Define => unreachable!("bodies end before a 'name ::='"),
            }
            empty_seq = matches!(t, Tok::Bar | Tok::LParen);
            prev_atom = matches!(
                t,
                Tok::Name(_) | Tok::Str(_) | Tok::Class(..) | Tok::Dot | Tok::RParen
            );
        }
        if depth != 0 {
            return Err(format!(
                "GBNF: unmatched '(' in rule '{name}' ({})",
                at(src, *pos)
            ));
        }
        if empty_seq {
            out.push_str(" \"\"");
        }
        out.push('\n');
        i = end;
    }
    if !defined.contains("root") {
        return Err("GBNF: the grammar has no 'root' rule".into());
    }
    for (n, p) in used {
        if !defined.contains(&n) {
            return Err(format!(
                "GBNF: rule '{n}' is used but not defined ({})",
                at(src, p)
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::gbnf_to_lark;

    #[test]
    fn rewrites_rules_literals_classes_and_repeats() {
        let g = r#"
# a comment
root ::= ("yes" | "no") ws item{2,3}
ws ::= [ \t\n]*
item ::= [^"\\] | "\x41\u00e9" | . | fooBar?
fooBar ::=
"#;
        let l = gbnf_to_lark(g).unwrap();
        assert_eq!(
            l,
            "start: g_root\n\
             g_root: ( \"yes\" | \"no\" ) g_ws g_item{2,3}\n\
             g_ws: /[\\x{20}\\x{9}\\x{a}]/*\n\
             g_item: /[^\\x{22}\\x{5c}]/ | \"Aé\" | /(?s:.)/ | g_foo_bar?\n\
             g_foo_bar: \"\"\n"
        );
    }

    #[test]
    fn errors_name_the_place() {
        for (g, want) in [
            (
                "root ::= \"a",
                "unterminated string literal (line 1, column 10)",
            ),
            ("root ::= [a-", "unterminated character class"),
            (
                "root ::= x",
                "rule 'x' is used but not defined (line 1, column 10)",
            ),
            ("item ::= \"a\"", "no 'root' rule"),
            ("root ::= (\"a\"", "unmatched '('"),
            ("root ::= \"a\")", "unmatched ')'"),
            ("root ::= * \"a\"", "nothing to repeat"),
            ("root := \"a\"", "expected '::='"),
            ("root ::= \"\\q\"", "unknown escape '\\q'"),
            (
                "root ::= \"a\"\nroot ::= \"b\"",
                "defined twice (line 2, column 1)",
            ),
            ("", "empty"),
            ("root ::= \"a\"{x}", "a repetition is"),
        ] {
            let e = gbnf_to_lark(g).unwrap_err();
            assert!(e.contains(want), "{g:?}: {e} lacks {want:?}");
        }
    }
}
