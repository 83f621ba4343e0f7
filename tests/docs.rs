//! The C API guide (docs/C_API.md) and the header (include/moela.h) agree: every `moela_` /
//! `MOELA_` name the guide uses exists in the header, and the guide mentions every function
//! the header declares.

use std::collections::BTreeSet;
use std::path::Path;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

/// Every identifier starting with `moela_` or `MOELA_`.
fn names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = text.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < b.len() {
        if (i == 0 || !ident(b[i - 1]))
            && (b[i..].starts_with(b"moela_") || b[i..].starts_with(b"MOELA_"))
        {
            let mut j = i;
            while j < b.len() && ident(b[j]) {
                j += 1;
            }
            // A bare prefix ("the `moela_` names") is not a name.
            if j > i + "moela_".len() {
                out.insert(text[i..j].to_string());
            }
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn c_api_guide_matches_the_header() {
    let header = read("include/moela.h");
    let guide = read("docs/C_API.md");
    let in_header = names(&header);
    let in_guide = names(&guide);
    // Names the guide may use that are not C identifiers of the header.
    let not_c = ["MOELA_LIBRARY"];
    let unknown: Vec<_> = in_guide
        .iter()
        .filter(|n| !in_header.contains(*n) && !not_c.contains(&n.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "docs/C_API.md names what include/moela.h lacks: {unknown:?}"
    );
    // Functions: a declaration line's `moela_x(`.
    let functions: BTreeSet<String> = header
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with('*') && !l.starts_with("typedef"))
        .flat_map(|l| names(l.split('(').next().unwrap_or("")))
        .filter(|n| n.starts_with("moela_") && header.contains(&format!("{n}(")))
        .collect();
    assert!(functions.len() > 30, "{functions:?}");
    let missing: Vec<_> = functions
        .iter()
        .filter(|f| !in_guide.contains(*f))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/C_API.md does not mention these functions of include/moela.h: {missing:?}"
    );
    // Stale claims the guide once made.
    assert!(
        !guide.contains("no model has a\ntokenizer yet")
            && !guide.contains("no model has a tokenizer yet")
    );
}
