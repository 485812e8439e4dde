//! The failure shapes of issue 11, written fresh for these tests (none is in the training
//! or held-out files), in both directions, plus padded problems and prompts in six
//! languages. Every test asserts on the shipped model's score against its own default
//! threshold, so a model that regresses fails here.

use std::borrow::Cow;
use std::sync::OnceLock;

use super::*;
use crate::classify::{Role, Turn};

fn model() -> &'static LearnedClassifier {
    static MODEL: OnceLock<LearnedClassifier> = OnceLock::new();
    MODEL.get_or_init(LearnedClassifier::builtin)
}

fn score_turns(turns: &[(Role, &str)]) -> Scored {
    let conversation = Conversation {
        turns: turns
            .iter()
            .map(|(role, text)| Turn {
                role: *role,
                text: Cow::Borrowed(*text),
            })
            .collect(),
    };
    model().score(&conversation)
}

fn score(text: &str) -> f32 {
    score_turns(&[(Role::User, text)]).score
}

/// Every prompt of `prompts` must land on the `reasoning` side of the threshold; the
/// failure lists all that do not.
fn assert_side(prompts: &[&str], reasoning: bool) {
    let t = model().default_threshold();
    let wrong: Vec<String> = prompts
        .iter()
        .map(|p| (score(p), p))
        .filter(|(s, _)| (*s >= t) != reasoning)
        .map(|(s, p)| format!("{s:.3} {p:.80}"))
        .collect();
    assert!(wrong.is_empty(), "threshold {t:.3}:\n{}", wrong.join("\n"));
}

const PROBLEMS: &[&str] = &[
    "A ladder 5 m long leans against a wall. Its foot slides away from the wall at 0.3 m/s. \
     How fast is the top sliding down when the foot is 3 m from the wall?",
    "Prove that for every positive integer n, 7^n - 1 is divisible by 6.",
    "We have 4 servers and 9 jobs with the durations below; each job runs on one server and \
     no server may run two jobs at once. Find the assignment that minimises the time at which \
     the last job finishes, and prove that no assignment can do better.",
    "The table below gives the road distances between six warehouses. Find the shortest \
     round trip that starts at A, visits every warehouse exactly once and returns to A, and \
     prove that no shorter one exists.",
];

fn csv_table() -> String {
    let mut s = String::from("t,x,load_kg,temp_c\n");
    for i in 0..60 {
        s += &format!(
            "{i},{:.2},{:.1},{}\n",
            i as f32 * 0.37,
            1.5 + i as f32 * 0.25,
            20 + i % 7
        );
    }
    s
}

fn log_lines() -> String {
    (0..40)
        .map(|i| {
            format!(
                "2025-03-0{} 12:{:02}:{:02} INFO worker-{} processed batch {} in {} ms\n",
                1 + i % 9,
                i,
                (i * 7) % 60,
                i % 4,
                1000 + i,
                40 + i * 3
            )
        })
        .collect()
}

fn code_block() -> String {
    let mut s = String::from("```python\nimport csv\n\ndef load(path):\n");
    for i in 0..30 {
        s += &format!("    row_{i} = read_row(path, {i})\n    total += row_{i}.value\n");
    }
    s + "    return total\n```\n"
}

fn markdown_table() -> String {
    let mut s = String::from("| job | duration (h) | owner |\n|---|---|---|\n");
    for i in 0..30 {
        s += &format!("| J{i} | {} | team {} |\n", 1 + (i * 5) % 9, i % 3);
    }
    s
}

/// How far a pasted table, log or code block may move a problem's score down.
const PADDING_SLACK: f32 = 0.1;

#[test]
fn padded_reasoning_problems_stay_reasoning() {
    let t = model().default_threshold();
    let pads = [csv_table(), log_lines(), code_block(), markdown_table()];
    let mut reasoning = 0;
    for problem in PROBLEMS {
        let bare = score(problem);
        reasoning += usize::from(bare >= t);
        for pad in &pads {
            for text in [
                format!("{problem}\n\n{pad}"),
                format!("{pad}\n{problem}"),
                format!("Here is my data:\n{pad}\n{problem}\n{pad}"),
            ] {
                let padded = score(&text);
                // Padding never pushes a problem down by more than the slack, and a problem
                // clearly on the reasoning side stays there.
                assert!(
                    padded >= bare - PADDING_SLACK && (bare < t + 0.05 || padded >= t),
                    "{padded:.3} (unpadded {bare:.3}, threshold {t:.3}) for {problem:.60} with {:.40}",
                    pad
                );
            }
        }
    }
    assert!(
        reasoning >= 3,
        "only {reasoning} of the problems score as reasoning"
    );
}

#[test]
fn padding_a_routine_request_does_not_make_it_reasoning() {
    let t = model().default_threshold();
    for ask in [
        "Please turn the table below into a short summary for my manager.",
        "Can you convert this to JSON?",
    ] {
        for pad in [csv_table(), markdown_table(), log_lines()] {
            let s = score(&format!("{ask}\n{pad}"));
            assert!(s < t, "{s:.3} >= {t:.3} for {ask} + paste");
        }
    }
}

#[test]
fn the_issue_shapes_that_need_reasoning() {
    assert_side(
        &[
            // An exercise sheet with its data.
            "Exercise 4 (Fluid mechanics). Water flows through a horizontal pipe that narrows \
             from 12 cm to 5 cm in diameter.\nMeasured values:\nQ = 0.018 m^3/s\np1 = 210 kPa\n\
             rho = 1000 kg/m^3\n(a) Find the velocities in both sections. (b) Find the pressure \
             in the narrow section, neglecting losses. (c) At what flow rate would the pressure \
             there drop to the vapour pressure of 2.3 kPa?",
            // A program whose difficulty is the algorithm, phrased like a routine request.
            "can you write me a python function that takes a string s and returns how many \
             distinct palindromic subsequences it has, modulo 1e9+7? s can be up to 1000 chars",
            "Write a function that, given the prices of a stock over n days, returns the best \
             profit with at most k transactions, where you must sell before buying again.",
            // A statement to prove that is false.
            "Prove that if a^2 is divisible by 8 then a is divisible by 8.",
            // Letter- and character-level constraints.
            "Write a sentence of at least eight words in which every word starts with the \
             letter s and no word is used twice.",
            "How many times does the letter e appear in the sentence 'Seventeen elephants \
             entered eleven empty tents'?",
            // Concurrency and memory models.
            "In Java, is double-checked locking for a lazily created singleton safe if the \
             instance field is not volatile? What exactly can another thread observe?",
            "Two threads share `int data; std::atomic<bool> ready;`. A writes data = 42 and then \
             ready.store(true, memory_order_relaxed); B spins on ready.load(memory_order_relaxed) \
             and then prints data. Can B print something other than 42 on ARM? Which orderings \
             make it correct, and why does x86 hide the bug?",
            "my consumer thread sometimes sleeps forever. producer: lock; queue.push(x); unlock; \
             cond.notify_one(). consumer: if (queue.empty()) { lock; cond.wait(lock); } \
             item = queue.pop(). what's the exact interleaving that hangs it and how do i fix it",
            // A false statement to prove.
            "Prove that 2^(2^n) + 1 is prime for every natural number n.",
            // Letter level.
            "Take the phrase 'silent night over frozen lakes', reverse the letters of every \
             word, then sort the reversed words alphabetically. What is the third word?",
            // A cryptarithm.
            "Solve the cryptarithm TWO + TWO = FOUR where each letter is a different digit and \
             no number starts with 0. Find all solutions.",
            // An algorithm behind a casual code request.
            "need a quick python function count_tilings(n) returning the number of ways to tile \
             a 2 x n strip with 1x2 dominoes and L-shaped trominoes, mod 10^9+7, n up to 10^6",
            // A puzzle in a format absent from the training data.
            "Five lamps stand in a row, all off. Touching a lamp flips it and its immediate \
             neighbours. Which lamps must be touched, and in what order, so that all five end \
             up on? Is the answer unique?",
        ],
        true,
    );
}

#[test]
fn a_short_follow_up_that_adds_a_condition_stays_reasoning() {
    let s = score_turns(&[
        (
            Role::User,
            "A bag holds 5 red and 3 blue marbles. Two are drawn without replacement. \
             What is the probability that both are red?",
        ),
        (Role::Assistant, "(5/8)(4/7) = 20/56 = 5/14."),
        (
            Role::User,
            "and if the first marble goes back in before the second draw?",
        ),
    ]);
    assert!(s.score >= model().default_threshold(), "{s:?}");
}

#[test]
fn a_thank_you_after_a_quantitative_problem_is_fast() {
    let s = score_turns(&[
        (
            Role::User,
            "A 4 kg box slides down a 25 degree ramp that is 3 m long, starting from rest, no \
             friction. How fast is it going at the bottom?",
        ),
        (Role::Assistant, "v = sqrt(2 g L sin 25), about 5.0 m/s."),
        (Role::User, "great, thanks!"),
    ]);
    assert!(s.score < model().default_threshold(), "{s:?}");
}

#[test]
fn the_issue_shapes_that_are_routine() {
    assert_side(
        &[
            // Explaining an algorithm is not running it.
            "Can you explain how Dijkstra's algorithm works in simple terms? I have an exam \
             tomorrow and the textbook is confusing.",
            // A "graph" that is a chart.
            "Make a bar graph in matplotlib of monthly sales: Jan 120, Feb 135, Mar 150, \
             Apr 160, May 155, Jun 170. Label the axes.",
            // "Business logic".
            "In a Django project, where should the business logic go: models, views or a \
             separate services module?",
            // Pasted code with a routine question.
            "Add docstrings and type hints to this:\n```python\ndef area(w, h):\n    return w * h\n\n\
             def perimeter(w, h):\n    return 2 * (w + h)\n```",
            // Full of keywords, easy to answer.
            "What's the difference between probability and statistics? Keep it to two \
             sentences, it's for a quiz.",
            "What does O(n log n) mean? Just the intuition please.",
            // Look-alikes of the reasoning shapes with an easy ask.
            "write a javascript function that capitalizes the first letter of every word in a \
             sentence",
            "convert this to uppercase please: the meeting has moved to friday at noon",
            "how do you spell accommodate? i always get it wrong",
            "What are the basic rules of sudoku? Just a short summary for a beginner.",
            "Who invented the Rubik's cube, and in what year?",
            "Show me a minimal Java example that starts two threads and waits for both to finish.",
            "Extract the email addresses from this text and list them one per line:\nHi all, \
             contact maria.lopez@example.com for the venue, tom@example.org for catering and \
             the front desk at desk@hotel.example for keys. Thanks, Jo",
        ],
        false,
    );
}

#[test]
fn reasoning_prompts_in_six_languages() {
    assert_side(
        &[
            "Beweisen Sie, dass es unendlich viele Primzahlen der Form 4k+3 gibt.",
            "Un tren sale de Madrid a las 9:00 a 120 km/h y otro sale de Zaragoza, a 300 km, a \
             las 9:30 a 90 km/h en sentido contrario. ¿A qué hora y a qué distancia de Madrid \
             se cruzan?",
            "Démontrez que pour tout entier n, n^5 - n est divisible par 30.",
            "甲乙两人从相距60公里的两地同时出发相向而行，甲每小时走4公里，乙每小时走6公里。\
             一只狗以每小时10公里的速度在两人之间来回跑，直到两人相遇。狗一共跑了多少公里？",
            "1から1000までの整数のうち、3でも5でも7でも割り切れない数はいくつありますか？\
             考え方も説明してください。",
            "Докажите, что среди любых пяти целых чисел можно выбрать три, сумма которых \
             делится на 3.",
        ],
        true,
    );
}

#[test]
fn everyday_prompts_in_six_languages() {
    assert_side(
        &[
            "Kannst du mir ein einfaches Rezept für Apfelkuchen empfehlen?",
            "Traduce al inglés, por favor: mañana tenemos una reunión a las diez.",
            "Peux-tu reformuler ce message pour qu'il soit plus poli : envoie-moi le rapport.",
            "你好！给我推荐一部适合周末看的电影吧。",
            "この文章を英語に翻訳してください：明日は雨が降るそうです。",
            "Привет! Посоветуй, пожалуйста, хорошую книгу на выходные.",
        ],
        false,
    );
}

/// An exercise sheet with its given values and lettered parts needs reasoning; the same
/// kind of sheet under a request to lay it out ("typeset it, do not solve it") is a
/// formatting job, in English, German and Chinese; and "solve" next to a negation in a
/// request for help ("I could not solve", "without solving ..., find") is still reasoning.
#[test]
fn an_exercise_sheet_is_solved_but_a_request_to_lay_it_out_is_fast() {
    assert_side(
        &[
            "Exercise 7 (Heat transfer). A steel rod of length 0.5 m is insulated along its \
             sides.\nGiven:\nk = 45 W/mK\nT1 = 150 C\nT2 = 20 C\nA = 0.0004 m^2\n(a) Find the \
             heat flow through the rod. (b) Find the temperature 0.2 m from the hot end. (c) How \
             long must the rod be for the heat flow to halve?",
            "Problem 3 - circuits.\nR1 = 220 ohm\nR2 = 470 ohm\nC = 10 uF\nV = 12 V\n(a) The \
             switch closes at t = 0; find the capacitor voltage after 5 ms. (b) When does the \
             current fall below 1 mA? (c) How much energy ends up in the resistors?",
            "Aufgabe 2 (Mechanik). Ein Wagen rollt eine schiefe Ebene hinunter.\nGegeben:\n\
             m = 12 kg\nh = 3 m\nmu = 0.15\na) Berechne die Geschwindigkeit am Ende der Ebene. \
             b) Welche Strecke rollt der Wagen danach auf ebenem Boden?",
        ],
        true,
    );
    assert_side(
        &[
            "Please typeset this exercise in LaTeX for the handout, keep every number as it is \
             and don't solve it:\nExercise 7 (Heat transfer). A steel rod of length 0.5 m is \
             insulated along its sides.\nk = 45 W/mK\nT1 = 150 C\nT2 = 20 C\n(a) Find the heat \
             flow through the rod. (b) Find the temperature 0.2 m from the hot end.",
            "Bitte formatiere diese Aufgabe sauber für das Arbeitsblatt, nicht lösen:\nAufgabe 2 \
             (Mechanik). Ein Wagen rollt eine schiefe Ebene hinunter.\nm = 12 kg\nh = 3 m\na) \
             Berechne die Geschwindigkeit am Ende der Ebene. b) Welche Strecke rollt der Wagen \
             danach?",
            "把下面这道题排版成讲义格式，不要解题：\n第3题（电路）R1 = 220 Ω，R2 = 470 Ω，C = 10 μF。\n\
             （1）求开关闭合5 ms后电容两端的电压。（2）电流何时降到1 mA以下？",
        ],
        false,
    );
    assert_side(
        &[
            "Without solving the equation x^2 - 7x + 3 = 0, find the sum of the squares of \
             its roots.",
            "I could not solve this one from my homework: a train leaves at 9:40 at 72 km/h, a \
             second one follows at 10:05 at 90 km/h on the same track. When does the second \
             catch up?",
            "Ich kann diese Aufgabe nicht lösen: Zeige, dass n^3 - n für jede natürliche Zahl n \
             durch 6 teilbar ist.",
            "这道题有没有别解？已知 x + y = 10，xy = 21，求 x^3 + y^3。",
        ],
        true,
    );
}

/// Real users wrap their asks in greetings and thanks; the training data mostly does not.
/// Before `courtesy::trim`, "Please help me with this: " in front of a problem lowered its
/// score by 0.12 on average (EVAL.md). A wrapped problem now scores as the bare one, in both
/// directions and in six languages besides English.
#[test]
fn greetings_and_thanks_around_a_prompt_do_not_move_its_score() {
    let pairs: &[(&str, &str, &str)] = &[
        (
            "Hello! ",
            "A tank fills through pipe A in 6 hours and through pipe B in 9 hours; a drain \
             empties it in 12 hours. With all three open from empty, when is it full?",
            " Thanks in advance!",
        ),
        (
            "Hi there, can you help me?\n",
            "Is it true that every odd perfect square leaves remainder 1 when divided by 8? \
             Prove it or give a counterexample.",
            "\n\nthank you so much!!",
        ),
        (
            "Hey! ",
            "Write a two-line birthday message for my aunt.",
            " Thanks!",
        ),
        (
            "Hallo, kannst du mir helfen? ",
            "Zeige, dass die Summe von drei aufeinanderfolgenden ganzen Zahlen immer durch 3 \
             teilbar ist.",
            " Vielen Dank!",
        ),
        (
            "¡Hola! ",
            "¿Cuántos números de tres cifras tienen sus dígitos en orden estrictamente \
             creciente? Explica el razonamiento.",
            " ¡Gracias!",
        ),
        (
            "Bonjour, ",
            "Peux-tu me donner trois idées de nom pour une boulangerie ?",
            " Merci beaucoup !",
        ),
        (
            "Здравствуйте! Помогите, пожалуйста: ",
            "Сколько существует способов рассадить 5 человек за круглым столом так, чтобы двое \
             определённых людей не сидели рядом?",
            " Спасибо!",
        ),
        (
            "你好，请帮我看看：",
            "一个长方形的周长是36厘米，长比宽多4厘米，它的面积是多少？请写出推理过程。",
            "谢谢！",
        ),
        (
            "こんにちは。",
            "AさんはBさんより3歳年上で、5年後には二人の年齢の和が41歳になります。\
             今のAさんは何歳ですか。",
            "よろしくお願いします。",
        ),
    ];
    for (before, prompt, after) in pairs {
        let bare = score(prompt);
        let wrapped = score(&format!("{before}{prompt}{after}"));
        assert!(
            (bare - wrapped).abs() < 1e-6,
            "{bare:.3} bare, {wrapped:.3} wrapped: {prompt:.60}"
        );
    }
    // The courtesy alone is still small talk.
    assert_side(
        &["Hello there!", "Thanks a lot!", "¡Hola!", "谢谢！"],
        false,
    );
}
