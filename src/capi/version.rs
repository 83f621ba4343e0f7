//! Library and ABI versions, from Cargo's package version.
//!
//! The header's `MOELA_VERSION_*` and `MOELA_ABI_VERSION` macros are written by
//! `tools/gen_header.sh` from the same Cargo version, and a C test checks that they equal what
//! these functions return.

use std::ffi::c_char;

use super::error::{cs, guard_value};

const fn parse_u32(s: &str) -> u32 {
    let b = s.as_bytes();
    let mut i = 0;
    let mut v: u32 = 0;
    while i < b.len() {
        assert!(b[i].is_ascii_digit(), "version component is not a number");
        v = v * 10 + (b[i] - b'0') as u32;
        i += 1;
    }
    v
}

pub(crate) const VERSION_MAJOR: u32 = parse_u32(env!("CARGO_PKG_VERSION_MAJOR"));
pub(crate) const VERSION_MINOR: u32 = parse_u32(env!("CARGO_PKG_VERSION_MINOR"));

/// Cargo's semver compatibility rule as one number: releases with equal ABI versions are
/// interchangeable. `major << 16` from 1.0 on; `minor` for 0.x releases (where a minor
/// release may break).
pub(crate) const ABI_VERSION: u32 = if VERSION_MAJOR == 0 {
    VERSION_MINOR
} else {
    VERSION_MAJOR << 16
};

/// The library's version, e.g. "0.1.0" (static; equals `MOELA_VERSION` of the header the
/// library was built with). Thread-safe.
#[no_mangle]
pub extern "C" fn moela_version() -> *const c_char {
    guard_value("moela_version", std::ptr::null(), || {
        cs(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()).as_ptr()
    })
}

/// The library's ABI version. A program built with a header whose `MOELA_ABI_VERSION`
/// differs from this must not use the library. Thread-safe.
#[no_mangle]
pub extern "C" fn moela_abi_version() -> u32 {
    guard_value("moela_abi_version", 0, || ABI_VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        // SAFETY: a static NUL-terminated string.
        let v = unsafe { std::ffi::CStr::from_ptr(moela_version()) };
        assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
        let major: u32 = env!("CARGO_PKG_VERSION_MAJOR").parse().unwrap();
        let minor: u32 = env!("CARGO_PKG_VERSION_MINOR").parse().unwrap();
        let want = if major == 0 { minor } else { major << 16 };
        assert_eq!(moela_abi_version(), want);
    }
}
