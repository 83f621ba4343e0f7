//! Saved session state bytes → `Session::load_state_bytes` and `load_state` (the reader) on
//! a session of the v3 fixture. Any input must give `Ok` or `Err`, never a panic, and never
//! an allocation beyond the session's own cache. When the first byte is odd, the rest has
//! its checksums recomputed first, so the fuzzer reaches the checks behind them (field
//! ranges, the fit with the session, token ids); a load that succeeds must leave a session
//! that evaluates and saves the same bytes again.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use moela::{Model, Session, SessionParams};

fn model() -> &'static Arc<Model> {
    static M: OnceLock<Arc<Model>> = OnceLock::new();
    M.get_or_init(|| {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/v3");
        Arc::new(Model::load(p).expect("the v3 fixture"))
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if mode & 1 == 1 {
        moela::session::state::fix_checksums(&mut bytes);
    }
    let kv_type = if mode & 2 == 2 {
        moela::attention::kv_cache::KvType::F16
    } else {
        moela::attention::kv_cache::KvType::F32
    };
    let params = SessionParams {
        n_ctx: 16,
        kv_type,
        ..Default::default()
    };
    let mut s = Session::new(model().clone(), &params).unwrap();
    let a = s.load_state_bytes(&bytes);
    let mut r = Session::new(model().clone(), &params).unwrap();
    let b = r.load_state(&bytes[..]);
    assert_eq!(a.is_ok(), b.is_ok());
    if a.is_ok() {
        assert_eq!(s.state_bytes().len(), bytes.len());
        if s.position() < s.n_ctx() {
            s.eval(&[1], false).unwrap();
        }
    }
});
