//! The second stage as a client and an operator see it: a request in the band is decided by
//! the encoder and the head; without the model files the gateway serves from the first
//! stage, says so in `/readyz`, and counts those requests `unavailable`.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::json;

const CHAT: &str = "What's a good name for a golden retriever puppy?";

/// The encoder's directory, or `None` (said on stderr) when it was never fetched and the
/// run does not require it (`scripts/test.sh` fetches it and requires it).
fn model_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("DELIBERATE_ENCODER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("models/encoder-e5"));
    if dir.join("SOURCE").exists() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("DELIBERATE_REQUIRE_ENCODER").is_none(),
        "no encoder at {}: run scripts/fetch-encoder.sh",
        dir.display()
    );
    eprintln!(
        "SKIPPED: no encoder at {} (scripts/fetch-encoder.sh)",
        dir.display()
    );
    None
}

/// A head that sends everything it sees to reasoning, for first-stage scores in `band`.
fn head_file(dir: &Path, band: (f32, f32)) -> PathBuf {
    let path = dir.join("stage2.json");
    let head = json!({
        "version": 1, "provenance": "test: always reasoning",
        "weights": vec![0.0; 384], "bias": 10.0,
        "band": {"lower": band.0, "upper": band.1},
    });
    std::fs::write(&path, head.to_string()).unwrap();
    path
}

async fn gateway(upstream: &MockUpstream, model_dir: &Path, head: &Path) -> Gateway {
    let section = format!(
        "[second_stage]\nmodel_dir = \"{}\"\nhead_file = \"{}\"\nbudget_ms = 10000\n",
        model_dir.display(),
        head.display()
    );
    Gateway::start(
        &openai_config(upstream.addr, &section),
        &[(
            "acme",
            tenant_toml("acme", KEY, "chat-model", "think-model", ""),
        )],
    )
    .await
}

async fn admin_text(gw: &Gateway, path: &str) -> String {
    client()
        .get(format!("http://{}{path}", gw.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn auto(text: &str) -> serde_json::Value {
    json!({"model": "auto", "messages": [{"role": "user", "content": text}]})
}

#[tokio::test]
async fn a_request_in_the_band_is_decided_by_the_second_stage() {
    let Some(model) = model_dir() else { return };
    let upstream = MockUpstream::ok("ok").await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&upstream, &model, &head_file(dir.path(), (0.0, 1.0))).await;
    assert!(admin_text(&gw, "/readyz")
        .await
        .contains("second stage: active"));
    let r = gw.chat(auto(CHAT)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-deliberate-tier"), "reasoning");
    assert!(header(&r, "x-deliberate-reason").starts_with("second stage; first stage: "));
    read_text(r).await;
    let metrics = admin_text(&gw, "/metrics").await;
    assert!(metrics.contains("deliberate_second_stage_requests_total{outcome=\"used\"} 1"));
    assert!(metrics.contains("deliberate_second_stage_duration_seconds_count 1"));
}

#[tokio::test]
async fn a_request_outside_the_band_never_reaches_it() {
    let Some(model) = model_dir() else { return };
    let upstream = MockUpstream::ok("ok").await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&upstream, &model, &head_file(dir.path(), (0.999, 1.0))).await;
    let r = gw.chat(auto(CHAT)).await;
    assert_eq!(header(&r, "x-deliberate-tier"), "fast");
    read_text(r).await;
    let metrics = admin_text(&gw, "/metrics").await;
    assert!(metrics.contains("deliberate_second_stage_duration_seconds_count 0"));
}

#[tokio::test]
async fn without_the_model_files_the_first_stage_serves_and_readyz_says_so() {
    let upstream = MockUpstream::ok("ok").await;
    let dir = tempfile::tempdir().unwrap();
    let head = head_file(dir.path(), (0.0, 1.0));
    let gw = gateway(&upstream, &dir.path().join("no-model"), &head).await;
    let ready = admin_text(&gw, "/readyz").await;
    assert!(ready.starts_with("ready\n"), "{ready}");
    assert!(
        ready.contains("second stage: unavailable, first stage only (model files missing"),
        "{ready}"
    );
    for _ in 0..2 {
        let r = gw.chat(auto(CHAT)).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-deliberate-tier"), "fast");
        assert!(!header(&r, "x-deliberate-reason").starts_with("second stage"));
        read_text(r).await;
    }
    let metrics = admin_text(&gw, "/metrics").await;
    assert!(
        metrics.contains("deliberate_second_stage_requests_total{outcome=\"unavailable\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn without_a_head_file_the_second_stage_is_off() {
    let upstream = MockUpstream::ok("ok").await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&upstream, dir.path(), &dir.path().join("none.json")).await;
    let ready = admin_text(&gw, "/readyz").await;
    assert!(
        ready.contains("second stage: off (no head file at"),
        "{ready}"
    );
}

/// `deliberate classify` decides as the gateway does: from a directory holding the encoder
/// and a head, an in-band prompt is scored by the second stage (and says so); with
/// `--first-stage-only` or without a head, by the first stage alone.
#[test]
fn the_classify_command_uses_the_second_stage_when_its_files_are_there() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("models")).unwrap();
    std::os::unix::fs::symlink(&model, dir.path().join("models/encoder-e5")).unwrap();
    head_file(&dir.path().join("models"), (0.0, 1.0));
    let classify = |extra: &[&str]| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_deliberate"))
            .current_dir(dir.path())
            .args(["classify", "--policies"])
            .arg(format!("{}/policies", env!("CARGO_MANIFEST_DIR")))
            .args(extra)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        let line = json!({"id": 1, "prompt": CHAT}).to_string();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(line.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (verdict, String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (verdict, stderr) = classify(&[]);
    assert!(stderr.contains("second stage active"), "{stderr}");
    assert_eq!(verdict["stage"], "second", "{verdict}");
    assert_eq!(
        verdict["tier"], "reasoning",
        "the always-reasoning head decided: {verdict}"
    );
    assert!(verdict["first_stage"].as_f64().unwrap() < verdict["score"].as_f64().unwrap());

    let (verdict, stderr) = classify(&["--first-stage-only"]);
    assert!(stderr.is_empty(), "{stderr}");
    assert_eq!(verdict["tier"], "fast", "{verdict}");
    assert!(verdict.get("stage").is_none(), "{verdict}");

    std::fs::remove_file(dir.path().join("models/stage2.json")).unwrap();
    let (verdict, stderr) = classify(&[]);
    assert!(
        stderr.contains("first stage only (second stage off: no head file"),
        "{stderr}"
    );
    assert_eq!(verdict["tier"], "fast", "{verdict}");
}
