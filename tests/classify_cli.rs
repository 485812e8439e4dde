//! The `deliberate classify` command line, whose output format other tools depend on:
//! one `{"id", "score", "tier", "reasons"}` line per input line, in order.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

fn deliberate() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_deliberate"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

/// Runs `command` with `input` on its stdin and returns its output (stdout captured).
fn run_with_stdin(command: &mut Command, input: &str) -> std::process::Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

const INPUT: &str = r#"{"id": "a", "prompt": "Prove that there are infinitely many prime numbers."}
{"id": 2, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi there, how are you?"}]}

{"id": "c", "prompt": ""}
{"id": "d"}
not json
"#;

fn check_lines(stdout: &[u8]) -> Vec<Value> {
    let lines: Vec<Value> = String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        5,
        "one line per non-empty input line: {lines:?}"
    );
    assert_eq!(lines[0]["id"], "a");
    assert_eq!(lines[0]["tier"], "reasoning");
    assert_eq!(lines[1]["id"], 2, "ids are echoed with their JSON type");
    assert_eq!(lines[1]["tier"], "fast");
    for line in &lines[..3] {
        let score = line["score"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&score));
        let reasons = line["reasons"].as_array().unwrap();
        assert!(!reasons.is_empty() && reasons.len() <= 3);
    }
    assert_eq!(lines[2]["reasons"][0], "no user text");
    assert!(lines[3]["error"].is_string() && lines[4]["error"].is_string());
    lines
}

#[test]
fn scores_stdin_and_files_in_order() {
    let out = run_with_stdin(deliberate().args(["classify"]), INPUT);
    assert!(out.status.success());
    let from_stdin = check_lines(&out.stdout);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.jsonl");
    std::fs::write(&file, INPUT).unwrap();
    let out = deliberate()
        .args(["classify", "--jsonl"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(check_lines(&out.stdout), from_stdin, "deterministic");
}

#[test]
fn the_tenant_threshold_decides_the_tier() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("strict.toml"),
        "fast_model = \"x\"\nreasoning_model = \"y\"\n[auto]\nreasoning_threshold = 1.0\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("eager.toml"),
        "fast_model = \"x\"\nreasoning_model = \"y\"\n[auto]\nreasoning_threshold = 0.0\n",
    )
    .unwrap();
    let prompt = r#"{"id": 1, "prompt": "Prove that there are infinitely many prime numbers."}"#;
    for (tenant, tier) in [("strict", "fast"), ("eager", "reasoning")] {
        let dir_arg = dir.path().to_str().unwrap();
        let out = run_with_stdin(
            deliberate().args(["classify", "--policies", dir_arg, "--tenant", tenant]),
            prompt,
        );
        let line: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(line["tier"], tier, "{tenant}");
    }
    let out = deliberate()
        .args(["classify", "--tenant", "nobody"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn eval_and_calibrate_report_figures() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("sample.jsonl");
    let mut lines = String::new();
    for i in 0..20 {
        lines += &format!("{{\"id\": {i}, \"prompt\": \"Prove that {i} + n^2 is never prime for odd n.\", \"label\": 1, \"source\": \"proofs\"}}\n");
        lines += &format!("{{\"id\": {}, \"prompt\": \"write a friendly email to Sam about lunch on day {i}\", \"label\": 0, \"source\": \"emails\"}}\n", 100 + i);
    }
    std::fs::write(&data, lines).unwrap();
    let out = deliberate()
        .args(["classify", "eval", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for needle in [
        "| proofs | 20 | 20 |",
        "| emails | 20 | 0 |",
        "AUC",
        "recall",
        "FPR",
        "reasoning share",
        "Keyword baseline",
        "Length baseline",
    ] {
        assert!(text.contains(needle), "{needle} missing in\n{text}");
    }
    let out = deliberate()
        .args(["classify", "calibrate", "--target-share", "0.5", "--jsonl"])
        .arg(&data)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("reasoning_threshold = "), "{text}");
    assert!(text.contains("sends 20 of 40"), "{text}");
}
