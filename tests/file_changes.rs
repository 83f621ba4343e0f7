//! A model file changed on disk while loaded: Session::new and Session::eval check the mapped
//! files' lengths and return a clear error instead of touching pages past the new end (which
//! would kill the process with SIGBUS). See `Model::check_files`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use moela::{Error, Model, Session, SessionParams};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("moela-filechange-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn expect_changed(r: Result<(), Error>, file: &str) {
    match r {
        Err(e @ Error::Format { .. }) => {
            let m = e.to_string();
            assert!(m.contains(file) && m.contains("changed on disk"), "{m}");
        }
        other => panic!("expected a format error, got {other:?}"),
    }
}

/// Loads `model_path`, truncates (then extends) `file` under it, checks both entry points, then
/// restores the file and checks the session works again.
fn check(model_path: &Path, file: &Path) {
    let model = Arc::new(Model::load(model_path).unwrap());
    let params = SessionParams {
        n_ctx: 8,
        ..Default::default()
    };
    let mut s = Session::new(model.clone(), &params).unwrap();
    let before = s.eval(&[1, 2], false).unwrap().to_vec();
    s.reset();
    let original = std::fs::read(file).unwrap();
    let name = file.file_name().unwrap().to_string_lossy().into_owned();

    for bytes in [&original[..original.len() / 2], &[][..]] {
        std::fs::write(file, bytes).unwrap();
        expect_changed(Session::new(model.clone(), &params).map(|_| ()), &name);
        expect_changed(s.eval(&[1, 2], false).map(|_| ()), &name);
        assert_eq!(
            s.position(),
            0,
            "a refused eval leaves the session as it was"
        );
    }
    let mut longer = original.clone();
    longer.extend_from_slice(&[0; 64]);
    std::fs::write(file, &longer).unwrap();
    expect_changed(s.eval(&[1, 2], false).map(|_| ()), &name);

    // Back to the original bytes: the mapping reads them again.
    std::fs::write(file, &original).unwrap();
    assert_eq!(s.eval(&[1, 2], false).unwrap(), &before[..]);
    Session::new(model, &params).unwrap();
}

#[test]
fn truncated_gguf_is_detected() {
    let d = tmpdir("gguf");
    let p = d.join("m.gguf");
    moela::convert::convert_hf_to_gguf(
        &fixture("v2_lite"),
        &p,
        moela::tensor::DType::F32,
        &mut |_| {},
    )
    .unwrap();
    check(&p, &p);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn truncated_safetensors_shard_is_detected() {
    let d = tmpdir("hf");
    for e in std::fs::read_dir(fixture("v2")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), d.join(e.file_name())).unwrap();
    }
    check(&d, &d.join("model-00002-of-00002.safetensors"));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn replacing_the_file_by_rename_or_delete_is_harmless() {
    let d = tmpdir("del");
    let p = d.join("m.gguf");
    moela::convert::convert_hf_to_gguf(
        &fixture("v2_lite"),
        &p,
        moela::tensor::DType::F32,
        &mut |_| {},
    )
    .unwrap();
    let model = Arc::new(Model::load(&p).unwrap());
    let mut s = Session::new(model.clone(), &SessionParams::default()).unwrap();
    let before = s.eval(&[1, 2], false).unwrap().to_vec();
    // A different (shorter) file renamed over the path: the mapping keeps the old inode.
    let other = d.join("other.gguf");
    std::fs::write(&other, b"GGUF").unwrap();
    std::fs::rename(&other, &p).unwrap();
    s.reset();
    assert_eq!(s.eval(&[1, 2], false).unwrap(), &before[..]);
    // Deleted: the same.
    std::fs::remove_file(&p).unwrap();
    let mut s2 = Session::new(model, &SessionParams::default()).unwrap();
    assert_eq!(s2.eval(&[1, 2], false).unwrap(), &before[..]);
    let _ = std::fs::remove_dir_all(&d);
}
