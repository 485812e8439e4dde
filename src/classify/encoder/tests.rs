use std::sync::OnceLock;

use super::*;

/// Where the tests find the model: `DELIBERATE_ENCODER_DIR`, else `models/encoder/`.
pub fn model_dir() -> PathBuf {
    std::env::var_os("DELIBERATE_ENCODER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("models/encoder"))
}

/// The model, or `None` (said on stderr) when it was never fetched. `scripts/test.sh`
/// fetches it first and sets `DELIBERATE_REQUIRE_ENCODER=1`: there a missing model fails
/// the test instead of skipping it.
pub fn shared_encoder() -> Option<&'static Encoder> {
    static ENCODER: OnceLock<Option<Encoder>> = OnceLock::new();
    ENCODER
        .get_or_init(|| match Encoder::load(&model_dir()) {
            Ok(e) => Some(e),
            Err(e)
                if e.is_missing() && std::env::var_os("DELIBERATE_REQUIRE_ENCODER").is_none() =>
            {
                eprintln!("SKIPPED encoder test: {e} (run scripts/fetch-encoder.sh)");
                None
            }
            Err(e) => panic!("encoder model: {e} (scripts/fetch-encoder.sh fetches it)"),
        })
        .as_ref()
}

#[derive(Deserialize)]
struct Reference {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
    vector: Vec<f32>,
}

fn reference() -> Reference {
    serde_json::from_str(include_str!(
        "../../../tests/fixtures/encoder_reference.json"
    ))
    .expect("fixture parses")
}

fn cos(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn tokenizes_as_the_reference_tokenizer() {
    let Some(e) = shared_encoder() else { return };
    for case in reference().cases {
        assert_eq!(e.window_ids(&case.text), case.ids, "{:?}", case.text);
    }
}

#[test]
fn embeds_as_sentence_transformers_does() {
    let Some(e) = shared_encoder() else { return };
    for case in reference().cases {
        let v = e.embed(&case.text).expect("embeds");
        assert_eq!(v.len(), 384);
        let worst = v
            .iter()
            .zip(&case.vector)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-3, "{:?}: off by {worst}", case.text);
        assert!(cos(&v, &case.vector) > 0.9999, "{:?}", case.text);
    }
}

#[test]
fn a_long_prompt_keeps_its_head_and_its_tail_inside_the_window() {
    let Some(e) = shared_encoder() else { return };
    let table = "| 1 | 2 | 3 |\n".repeat(2000);
    let text = format!("prove the claim below.\n{table}\nwhy does it hold?");
    let ids = e.window_ids(&text);
    assert_eq!(ids.len(), DEFAULT_WINDOW_TOKENS);
    let head = e.window_ids("prove the claim below.");
    let tail = e.window_ids("why does it hold?");
    assert_eq!(ids[..head.len() - 1], head[..head.len() - 1], "head kept");
    assert_eq!(ids[ids.len() - (tail.len() - 1)..], tail[1..], "tail kept");
    // Medium texts (tokenised whole) are cut the same way.
    let medium = format!("prove it {} why", "x ".repeat(400));
    let ids = e.window_ids(&medium);
    assert_eq!(ids.len(), DEFAULT_WINDOW_TOKENS);
    assert_eq!(ids[ids.len() - 2], e.tokenizer.id("why").unwrap());
}

#[test]
fn embedding_is_total_on_odd_input() {
    let Some(e) = shared_encoder() else { return };
    for text in ["", "🙂", "\u{0}", &"é".repeat(100_000), &"a".repeat(300)] {
        let v = e.embed(text).expect("embeds");
        assert!(v.iter().all(|x| x.is_finite()));
        assert!((cos(&v, &v) - 1.0).abs() < 1e-3);
    }
}

#[test]
fn a_stopped_call_gives_up() {
    let Some(e) = shared_encoder() else { return };
    let stop = AtomicBool::new(true);
    assert!(matches!(
        e.embed_unless_stopped("prove it", &stop),
        Ok(Err(Stopped))
    ));
}

#[test]
fn missing_files_are_reported_as_missing() {
    let err = Encoder::load(Path::new("/nonexistent/encoder"))
        .err()
        .unwrap();
    assert!(err.is_missing(), "{err}");
}
