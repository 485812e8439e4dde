//! `[second_stage]` -> `classify::stage2::Settings`, each problem reported at its value.

use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::problem::FileProblems;
use super::raw::RawSecondStage;
use super::validate::within;
use crate::classify::stage2::{head::valid_band, Band, Settings};

/// The encoder's position table: no window may be longer.
const MAX_WINDOW_TOKENS: u64 = 512;
/// Encoder threads: each holds a core for ~100 ms a call.
const MAX_CONCURRENT: u64 = 64;
/// Calls waiting for a thread.
const MAX_QUEUE: u64 = 10_000;
/// Longest a request may wait for the second stage.
const MAX_BUDGET_MS: u64 = 60_000;

pub(super) fn settings(raw: &RawSecondStage, p: &mut FileProblems) -> Settings {
    let d = Settings::default();
    let path = |v: &Option<Spanned<String>>, default: PathBuf| {
        v.as_ref().map_or(default, |v| PathBuf::from(v.get_ref()))
    };
    // Bounded so that no value can overflow the permit count or spawn a thread per unit.
    let window = within(
        &raw.window_tokens,
        d.window_tokens as u64,
        3..=MAX_WINDOW_TOKENS,
        p,
    );
    let max_queue = within(&raw.max_queue, d.max_queue as u64, 0..=MAX_QUEUE, p);
    let max_concurrent = within(
        &raw.max_concurrent,
        d.max_concurrent as u64,
        1..=MAX_CONCURRENT,
        p,
    );
    let budget_ms = within(
        &raw.budget_ms,
        d.budget.as_millis() as u64,
        1..=MAX_BUDGET_MS,
        p,
    );
    let band = match (&raw.band_lower, &raw.band_upper) {
        (None, None) => None,
        (Some(lower), Some(upper)) => {
            let band = Band {
                lower: *lower.get_ref() as f32,
                upper: *upper.get_ref() as f32,
            };
            match valid_band(&band) {
                Ok(()) => Some(band),
                Err(e) => {
                    p.at(lower.span(), e);
                    None
                }
            }
        }
        (Some(one), None) | (None, Some(one)) => {
            p.at(one.span(), "set both band_lower and band_upper, or neither");
            None
        }
    };
    Settings {
        enabled: raw.enabled.as_ref().is_none_or(|v| *v.get_ref()),
        model_dir: path(&raw.model_dir, d.model_dir),
        head_file: path(&raw.head_file, d.head_file),
        budget: Duration::from_millis(budget_ms),
        max_concurrent: max_concurrent as usize,
        max_queue: max_queue as usize,
        window_tokens: window as usize,
        band,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn load(section: &str) -> Result<Settings, String> {
        let config = format!(
            "[providers.p]\nkind = \"simulated\"\n[models.m]\nprovider = \"p\"\ntier = \"fast\"\n[models.r]\nprovider = \"p\"\ntier = \"reasoning\"\n{section}"
        );
        let tenant = "name = \"t\"\napi_keys = [{ sha256 = \"c7fa7b6662c547fa9cadb4ad755e0f63c0dd1328e4d703b96601d331245f8bf4\" }]\nfast_model = \"m\"\nreasoning_model = \"r\"\n";
        super::super::validate::load_sources(
            (Path::new("deliberate.toml"), &config),
            vec![(PathBuf::from("policies/t.toml"), tenant.to_string())],
        )
        .map(|l| l.snapshot.server.second_stage)
        .map_err(|p| p.to_string())
    }

    #[test]
    fn defaults_without_a_section() {
        assert_eq!(load("").unwrap(), Settings::default());
    }

    #[test]
    fn every_key_is_read() {
        let s = load(
            "[second_stage]\nenabled = false\nmodel_dir = \"m\"\nhead_file = \"h.json\"\nbudget_ms = 50\nmax_concurrent = 2\nmax_queue = 0\nwindow_tokens = 512\nband_lower = 0.25\nband_upper = 0.75\n",
        )
        .unwrap();
        assert!(!s.enabled);
        assert_eq!(s.model_dir, PathBuf::from("m"));
        assert_eq!(s.head_file, PathBuf::from("h.json"));
        assert_eq!(s.budget, Duration::from_millis(50));
        assert_eq!(
            (s.max_concurrent, s.max_queue, s.window_tokens),
            (2, 0, 512)
        );
        assert_eq!(
            s.band,
            Some(Band {
                lower: 0.25,
                upper: 0.75
            })
        );
    }

    #[test]
    fn bad_values_are_reported_at_the_value() {
        let e = load("[second_stage]\nwindow_tokens = 1024\n").unwrap_err();
        assert!(
            e.contains("deliberate.toml:10:17: must be between 3 and 512"),
            "{e}"
        );
        let e = load("[second_stage]\nband_lower = 0.8\nband_upper = 0.2\n").unwrap_err();
        assert!(e.contains("band must satisfy"), "{e}");
        let e = load("[second_stage]\nband_lower = 0.8\n").unwrap_err();
        assert!(e.contains("set both band_lower and band_upper"), "{e}");
        let e = load("[second_stage]\nbudget_ms = 0\n").unwrap_err();
        assert!(e.contains("must be between 1 and 60000"), "{e}");
        // Values that would overflow the permit count or spawn a thread each are refused.
        let e = load("[second_stage]\nmax_queue = 1000000\n").unwrap_err();
        assert!(e.contains("must be between 0 and 10000"), "{e}");
        let e = load("[second_stage]\nmax_concurrent = 100000\n").unwrap_err();
        assert!(e.contains("must be between 1 and 64"), "{e}");
        let e = load("[second_stage]\nbudget = 3\n").unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
    }
}
