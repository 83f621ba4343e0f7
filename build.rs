//! Builds the C kernels in csrc/ with the `cc` crate. With the `bindgen` feature, also
//! regenerates the Rust bindings of csrc/include/moela_kernels.h (the committed copy in
//! src/kernels/bindings.rs is what a normal build uses, so building needs no libclang;
//! tools/test.sh regenerates it and fails if it differs). Also sets the C library's SONAME.

fn main() {
    println!("cargo:rerun-if-changed=csrc");
    set_soname();
    cc::Build::new()
        .file("csrc/generic/generic.c")
        .include("csrc/include")
        .opt_level(2)
        .warnings(true)
        .extra_warnings(true)
        .flag_if_supported("-std=c11")
        .compile("moela_kernels_generic");

    #[cfg(feature = "bindgen")]
    {
        let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("bindings.rs");
        bindgen::Builder::default()
            .header("csrc/include/moela_kernels.h")
            .allowlist_function("mk_.*")
            .use_core()
            .layout_tests(false)
            .generate()
            .expect("bindgen failed on csrc/include/moela_kernels.h")
            .write_to_file(&out)
            .expect("cannot write bindings");
        println!("cargo:rustc-env=MOELA_GENERATED_BINDINGS={}", out.display());
    }
}

/// Gives the shared library the SONAME cargo-c would (`libmoela.so.<major>`, or
/// `libmoela.so.0.<minor>` before 1.0), so programs linked against it record the ABI they
/// need; `tools/install.sh` installs the matching symlinks.
fn set_soname() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if !matches!(
        os.as_str(),
        "linux" | "android" | "freebsd" | "netbsd" | "openbsd" | "dragonfly"
    ) {
        return;
    }
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap();
    let minor = std::env::var("CARGO_PKG_VERSION_MINOR").unwrap();
    let sover = if major == "0" {
        format!("0.{minor}")
    } else {
        major
    };
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libmoela.so.{sover}");
}
