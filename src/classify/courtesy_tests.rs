//! `courtesy::trim`: what is cut, what is kept whole, in seven languages; every case a
//! review of the first version reported is here.

use super::trim;

const PROBLEM: &str = "Prove that the sum of two odd numbers is even.";

#[test]
fn greetings_and_help_requests_before_a_task_are_cut() {
    for wrapped in [
        format!("Hello, {PROBLEM}"),
        format!("Hi there! {PROBLEM}"),
        format!("hi ChatGPT, {PROBLEM}"),
        format!("Hey - {PROBLEM}"),
        format!("Hi! Hope you're doing well. {PROBLEM}"),
        format!("Please help me with this: {PROBLEM}"),
        format!("Can you help me?\n{PROBLEM}"),
        format!("Good morning! Quick question: {PROBLEM}"),
        format!("{PROBLEM} Thanks in advance!"),
        format!("{PROBLEM}\n\nthanks a lot!!"),
        format!("Hello, please help: {PROBLEM} Thank you!"),
        format!("Hey, ChatGPT, {PROBLEM}"),
        format!("Hope you’re doing well! {PROBLEM}"),
        format!("hi\n{PROBLEM}"),
    ] {
        assert_eq!(trim(&wrapped), PROBLEM, "{wrapped:?}");
    }
}

#[test]
fn a_greeting_with_no_punctuation_goes_only_before_a_request() {
    assert_eq!(
        trim("hi can you prove that 7^n - 1 is divisible by 6?"),
        "can you prove that 7^n - 1 is divisible by 6?"
    );
    assert_eq!(
        trim("Hello I'm stuck on this: is 1001 prime?"),
        "I'm stuck on this: is 1001 prime?"
    );
}

#[test]
fn only_the_phrase_own_punctuation_goes() {
    assert_eq!(
        trim("Can you help me? -3x + 5 = 11, solve for x."),
        "-3x + 5 = 11, solve for x."
    );
    assert_eq!(
        trim("Hey, -1/12 is the sum of all naturals? Explain."),
        "-1/12 is the sum of all naturals? Explain."
    );
    assert_eq!(trim("Hi, .5 + .25 = ? Show it."), ".5 + .25 = ? Show it.");
}

#[test]
fn courtesy_in_other_languages_is_cut() {
    let de = "Beweise, dass die Summe zweier ungerader Zahlen gerade ist.";
    assert_eq!(
        trim(&format!("Hallo, kannst du mir helfen? {de} Danke!")),
        de
    );
    // "all" (listed before it) only starts "allerseits": the longer word is still found.
    assert_eq!(trim(&format!("Hallo allerseits, {de}")), de);
    let es = "Demuestra que la suma de dos impares es par.";
    assert_eq!(trim(&format!("¡Hola! ¿Me puedes ayudar? {es} Gracias")), es);
    let fr = "Montre que la somme de deux impairs est paire.";
    assert_eq!(trim(&format!("Bonjour, {fr} Merci d'avance !")), fr);
    let ru = "Докажи, что сумма двух нечётных чисел чётна.";
    assert_eq!(
        trim(&format!(
            "Здравствуйте! Помогите, пожалуйста: {ru} Спасибо!"
        )),
        ru
    );
    let zh = "证明两个奇数之和是偶数。";
    assert_eq!(trim(&format!("你好，请帮我看看：{zh}谢谢！")), zh);
    let ja = "二つの奇数の和が偶数であることを証明してください。";
    assert_eq!(trim(&format!("こんにちは。{ja}よろしくお願いします。")), ja);
    // French puts a no-break space before `?`; iOS writes a curly apostrophe.
    assert_eq!(trim(&format!("Pouvez-vous m'aider\u{a0}? {fr}")), fr);
    assert_eq!(trim(&format!("{fr} Merci d’avance !")), fr);
}

#[test]
fn words_that_only_start_like_courtesy_stay() {
    for text in [
        "Hidden Markov models: how does the forward algorithm work?",
        "Dearly beloved is the opening line; who wrote it?",
        "Can you help me prove that sqrt(2) is irrational?",
        "Please helpfully list three primes above 100.",
        "Heya is not a word, is it? Count its letters.",
        "Olay is a brand. Name three others in skincare.",
        "Is 'thanks' a noun or a verb in 'thanks for nothing'",
        "Hello world in Rust, with a test: show me the program.",
        "Hi-res scans of the sheet are attached; read the totals.",
        "Write a short note to my teacher to say thanks",
        // The greeting is the topic, a name, or "Hello, World!" in any language.
        "Hello, World! program in C with a Makefile, please.",
        "Hola mundo en Python, con comentarios.",
        "Привет, мир на Rust: напиши программу.",
        "你好，世界程序用 Rust 怎么写？",
        "Good morning in Japanese, formal and informal?",
        "Hello in 20 languages, as a JSON table.",
        "Hi vs hello: which is more formal?",
        "Hey Jude, don't make it bad: what key is it in?",
        "Dear John letter: what does the phrase mean?",
        "Dear Hiring Manager,\n\nI am writing to apply. Proofread this.",
        "Buenas prácticas para manejar errores en Rust: ¿cuáles son?",
        "Hello.java won't compile: cannot find symbol.",
        "HI state income tax brackets for 2024?",
        // Thanks after a colon are what is asked about.
        "Translate to English: Danke schön",
        "Translate into French:\nThank you very much",
    ] {
        assert_eq!(trim(text), text, "{text:?}");
    }
}

#[test]
fn a_turn_that_is_only_courtesy_is_kept_whole() {
    for text in [
        "hi!",
        "Thanks!",
        "Hello there, thank you!",
        "ありがとう",
        "   ",
        "Hi! Thank you very much!",
        "Привет! Спасибо!",
        "Hello! Can you help me? Thank you so much in advance!!",
    ] {
        assert_eq!(trim(text), text, "{text:?}");
    }
}
