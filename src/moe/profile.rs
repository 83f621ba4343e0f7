//! Expert-use profiles: how often each routed expert of each MoE layer was chosen on some text.
//! `moela profile` writes them; expert offloading pins the hottest experts from one and
//! `moela convert --expert-profile` gives hot experts more bits.
//!
//! File format (JSON, `"format": "moela-expert-profile"`, `"version": 1`):
//! `{"format", "version", "model", "n_layer", "n_routed_experts", "tokens",
//!   "layers": [{"layer": L, "counts": [u64; n_routed_experts]}, ...]}`
//! with one entry per MoE layer (dense layers are absent), in layer order.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const PROFILE_FORMAT: &str = "moela-expert-profile";
pub const PROFILE_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerCounts {
    pub layer: usize,
    pub counts: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExpertProfile {
    pub format: String,
    pub version: u32,
    /// What the profile was recorded on (a path or a name; informational).
    pub model: String,
    pub n_layer: usize,
    pub n_routed_experts: usize,
    /// Tokens evaluated while recording.
    pub tokens: u64,
    pub layers: Vec<LayerCounts>,
}

impl ExpertProfile {
    /// An empty profile with zero counts for each of `moe_layers`.
    pub fn new(model: &str, n_layer: usize, n_routed_experts: usize, moe_layers: &[usize]) -> Self {
        ExpertProfile {
            format: PROFILE_FORMAT.into(),
            version: PROFILE_VERSION,
            model: model.into(),
            n_layer,
            n_routed_experts,
            tokens: 0,
            layers: moe_layers
                .iter()
                .map(|&layer| LayerCounts {
                    layer,
                    counts: vec![0; n_routed_experts],
                })
                .collect(),
        }
    }

    /// Counts of one layer, if it is a MoE layer of the profile.
    pub fn counts(&self, layer: usize) -> Option<&[u64]> {
        self.layers
            .iter()
            .find(|l| l.layer == layer)
            .map(|l| l.counts.as_slice())
    }

    /// Adds one routing decision (an expert chosen for one token in `layer`).
    pub fn record(&mut self, layer: usize, expert: usize) {
        if let Some(l) = self.layers.iter_mut().find(|l| l.layer == layer) {
            if let Some(c) = l.counts.get_mut(expert) {
                *c += 1;
            }
        }
    }

    /// Every (layer, expert, count), hottest first (ties by layer, then expert, so the order
    /// is deterministic).
    pub fn ranked(&self) -> Vec<(usize, usize, u64)> {
        let mut all: Vec<(usize, usize, u64)> = self
            .layers
            .iter()
            .flat_map(|l| l.counts.iter().enumerate().map(|(e, &c)| (l.layer, e, c)))
            .collect();
        all.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
        all
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("profile serialises")
    }

    pub fn from_json(text: &str) -> Result<Self> {
        let p: ExpertProfile = serde_json::from_str(text)
            .map_err(|e| Error::InvalidArg(format!("expert profile: {e}")))?;
        if p.format != PROFILE_FORMAT || p.version != PROFILE_VERSION {
            return Err(Error::InvalidArg(format!(
                "expert profile: format {:?} version {} (expected {PROFILE_FORMAT:?} version {PROFILE_VERSION})",
                p.format, p.version
            )));
        }
        for l in &p.layers {
            if l.layer >= p.n_layer || l.counts.len() != p.n_routed_experts {
                return Err(Error::InvalidArg(format!(
                    "expert profile: layer {} has {} counts (n_layer {}, n_routed_experts {})",
                    l.layer,
                    l.counts.len(),
                    p.n_layer,
                    p.n_routed_experts
                )));
            }
        }
        Ok(p)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::InvalidArg(format!("{}: {e}", path.display())))?;
        Self::from_json(&text)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_json())
            .map_err(|e| Error::InvalidArg(format!("{}: {e}", path.display())))
    }

    /// Checks that the profile was recorded on a model of this shape.
    pub fn check_shape(&self, n_layer: usize, n_routed_experts: usize) -> Result<()> {
        if self.n_layer != n_layer || self.n_routed_experts != n_routed_experts {
            return Err(Error::InvalidArg(format!(
                "expert profile is for {} layers × {} experts, the model has {} × {}",
                self.n_layer, self.n_routed_experts, n_layer, n_routed_experts
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_ranking() {
        let mut p = ExpertProfile::new("m", 3, 4, &[1, 2]);
        p.record(1, 3);
        p.record(1, 3);
        p.record(2, 0);
        p.record(0, 0); // dense layer: ignored
        p.tokens = 2;
        let q = ExpertProfile::from_json(&p.to_json()).unwrap();
        assert_eq!(p, q);
        let r = q.ranked();
        assert_eq!(r[0], (1, 3, 2));
        assert_eq!(r[1], (2, 0, 1));
        assert_eq!(r.len(), 8);
        assert!(q.check_shape(3, 4).is_ok());
        assert!(q.check_shape(3, 5).is_err());
    }

    #[test]
    fn rejects_wrong_format_and_shapes() {
        let p = ExpertProfile::new("m", 3, 4, &[1]);
        let bad = p.to_json().replace("moela-expert-profile", "other");
        assert!(ExpertProfile::from_json(&bad).is_err());
        let mut q = p.clone();
        q.layers[0].counts.pop();
        assert!(ExpertProfile::from_json(&q.to_json()).is_err());
        assert!(ExpertProfile::from_json("{").is_err());
    }
}
