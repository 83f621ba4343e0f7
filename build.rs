//! Builds the C kernels in csrc/ with the `cc` crate. With the `bindgen` feature, also
//! regenerates the Rust bindings of csrc/include/moela_kernels.h (the committed copy in
//! src/kernels/bindings.rs is what a normal build uses, so building needs no libclang;
//! tools/test.sh regenerates it and fails if it differs). Also sets the C library's SONAME.

fn main() {
    println!("cargo:rerun-if-changed=csrc");
    set_soname();
    cc::Build::new()
        .file("csrc/generic/generic.c")
        .file("csrc/generic/iquants.c")
        .file("csrc/generic/iquant_grids.c")
        .include("csrc/include")
        .opt_level(2)
        .warnings(true)
        .extra_warnings(true)
        .flag_if_supported("-std=c11")
        .compile("moela_kernels_generic");

    // One ISA per file, each with its own target flags; Rust calls a file's kernels only after
    // run-time feature detection says the CPU has them.
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if arch == "x86_64" {
        isa_lib(
            "csrc/x86/avx2.c",
            "moela_kernels_avx2",
            &["-mavx2", "-mfma", "-mf16c"],
        );
        isa_lib(
            "csrc/x86/iquants_avx2.c",
            "moela_kernels_iquants_avx2",
            &["-mavx2", "-mfma", "-mf16c"],
        );
        isa_lib(
            "csrc/x86/avx512.c",
            "moela_kernels_avx512",
            &[
                "-mavx512f",
                "-mavx512bw",
                "-mavx512vl",
                "-mavx512dq",
                "-mavx512vnni",
                "-mavx2",
                "-mfma",
                "-mf16c",
            ],
        );
        isa_lib(
            "csrc/x86/avx512vbmi.c",
            "moela_kernels_avx512vbmi",
            &[
                "-mavx512f",
                "-mavx512bw",
                "-mavx512vl",
                "-mavx512dq",
                "-mavx512vnni",
                "-mavx512vbmi",
                "-mavx2",
                "-mfma",
                "-mf16c",
            ],
        );
    }

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
    if arch == "aarch64" {
        isa_lib("csrc/arm/neon.c", "moela_kernels_neon", &[]);
        isa_lib(
            "csrc/arm/dotprod.c",
            "moela_kernels_dotprod",
            &["-march=armv8.2-a+dotprod"],
        );
        isa_lib("csrc/arm/iquants_neon.c", "moela_kernels_iquants_neon", &[]);
        isa_lib(
            "csrc/arm/iquants_dotprod.c",
            "moela_kernels_iquants_dotprod",
            &["-march=armv8.2-a+dotprod"],
        );
        isa_lib(
            "csrc/arm/i8mm.c",
            "moela_kernels_i8mm",
            &["-march=armv8.2-a+dotprod+i8mm"],
        );
    }
}

fn isa_lib(file: &str, name: &str, flags: &[&str]) {
    let mut b = cc::Build::new();
    b.file(file)
        .include("csrc/include")
        .opt_level(3)
        .warnings(true)
        .flag_if_supported("-std=c11");
    for f in flags {
        b.flag(f);
    }
    b.compile(name);
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
    // Export nothing from the dependencies' archives (rlibs): llguidance has its own C API
    // (`llg_*`, #[no_mangle]) that rustc would otherwise export from libmoela.so too. moela's
    // own `moela_*` functions come from its object files, not an archive, and stay exported.
    println!("cargo:rustc-cdylib-link-arg=-Wl,--exclude-libs,ALL");
}
