//! Multilingual keyword stems: the rule categories in German, Spanish, French, Portuguese,
//! Italian, Russian, Chinese, Japanese and Korean.
//!
//! The English tables (`keywords`) look words up whole, which cannot work for languages that
//! inflect heavily (докажите, доказать, доказательство) or write without spaces (请证明). So
//! each entry here is a stem, matched as a substring of the lowercased turn (`stems`): a stem in an alphabetic script must start a word (so "beweis" finds
//! "Beweise" and "beweisen", not "Gegenbeweis"), a CJK or Hangul stem may sit anywhere.
//!
//! Each group carries an English gloss. A hit adds the group's weight to its category, as an
//! English keyword would, and the gloss is added to the prompt's static embedding
//! (`embed::embed_parts`): the English-only token table spells a Russian or Japanese
//! prompt in meaningless pieces, but "prove" it knows. So the learned model's English
//! knowledge of categories carries over to prompts in these languages.
//!
//! No stem is an English word or the start of a common one (that would double-count English
//! prompts); `stems_are_not_english` checks the English tables.

use std::sync::OnceLock;

use super::keywords::Feat::{self, *};
use super::keywords::{M, S, W};
use super::stems::Stems;

/// (category, weight, English gloss, stems separated by `|`).
#[rustfmt::skip]
pub(super) const GROUPS: &[(Feat, f32, &str, &str)] = &[
    (Proof, S, "prove", "beweis|demuestr|demostr|démontr|demontr|prouve|prouvez|prouver|\
        demonstr|dimostr|доказ|докаж|证明|求证|証明|증명"),
    (Proof, M, "show that", "zeigen sie, dass|zeige, dass|zeigen, dass|muestre que|muestra que|\
        montrer que|montrez que|mostre que|mostrar que|mostra che|покажите, что|показать, что|\
        покажите что|试证|を示せ|보이시오|보여라"),
    (Proof, M, "disprove", "widerleg|refut|réfut|confut|опроверг|反例|반례"),
    (Proof, M, "theorem", "teorema|théorème|теорем|定理|lemme|лемм|引理|補題"),
    (Proof, M, "induction", "vollständige induktion|induktion|inducción|récurrence|indução|induzione|\
        индукци|归纳法|数学归纳|帰納法|귀납"),
    (Proof, M, "contradiction", "widerspruch|contradicción|contradição|contraddizione|противоречи|\
        反证法|背理法|귀류법"),
    (Proof, M, "irrational", "irracional|irrationnel|irrazional|иррационал|无理数|無理数|무리수"),
    (Proof, M, "infinitely many", "unendlich viele|infinitos|infinitas|infinité|infiniti|бесконечно много|\
        无穷多|無限に|무한히"),
    (Math, S, "how many ways", "auf wie viele arten|wie viele möglichkeiten|de cuántas maneras|\
        de cuántas formas|de combien de façons|de combien de manières|de quantas maneiras|\
        de quantas formas|in quanti modi|сколькими способами|сколько способов|多少种|几种方法|\
        有多少种|何通り|몇 가지 방법|경우의 수"),
    (Math, M, "equation", "gleichung|ecuación|ecuaciones|équation|equação|equações|equazion|уравнени|\
        方程|방정식"),
    (Math, M, "solve", "löse|lösen sie|resuelv|résou|résolv|resolva|risolv|решите|решить|реши |解方程|\
        求解|解け|解き|풀어|풀이"),
    (Math, M, "probability", "wahrscheinlichkeit|probabilidad|probabilité|probabilidade|probabilità|\
        вероятност|概率|確率|확률"),
    (Math, M, "integral", "integrale|intégrale|интеграл|定积分|不定积分|求积分|積分|적분"),
    (Math, M, "derivative", "ableitung|derivada|dérivée|derivata|производн|导数|微分|미분"),
    (Math, M, "prime numbers", "primzahl|números primos|número primo|nombres premiers|nombre premier|\
        numeri primi|numero primo|простых чисел|простые числа|простое число|质数|素数"),
    (Math, M, "divisible", "teilbar|divisível|divisibile|делится|делител|整除|割り切|나누어떨어|약수"),
    (Math, M, "integers", "ganze zahl|ganzen zahl|ganzzahl|números enteros|nombres entiers|\
        números inteiros|numeri interi|целых чисел|целые числа|целое число|整数|정수"),
    (Math, M, "triangle", "dreieck|triángulo|triângulo|triangolo|треугольн|三角形|삼각형"),
    (Math, M, "combinatorics", "kombinatorik|combinatoire|combinatória|комбинатор|\
        排列组合|组合数|組み合わせ|순열|조합"),
    (Math, W, "sum", "summe der|summe von|die summe|suma de|somme|somma|сумма|之和|合計|합계"),
    (Algo, M, "algorithm", "algorithmus|algoritmo|algorithme|алгоритм|算法|アルゴリズム|알고리즘"),
    (Algo, M, "complexity", "komplexität|complejidad|complexité|complexidade|complessità|\
        сложность алгоритма|временная сложность|复杂度|計算量|복잡도"),
    (Algo, M, "optimal", "óptim|optimale|ottimal|оптимальн|最优|最適|최적"),
    (Algo, S, "shortest path", "kürzeste weg|kürzesten weg|camino más corto|plus court chemin|\
        caminho mais curto|cammino minimo|percorso più breve|кратчайш|最短路|最短経路|최단 경로"),
    (Algo, S, "dynamic programming", "dynamische programmierung|programación dinámica|\
        programmation dynamique|programação dinâmica|programmazione dinamica|\
        динамическое программирование|动态规划|動的計画|동적 계획"),
    (Algo, M, "maximize", "maximier|minimier|maximizar|minimizar|maximiser|minimiser|massimizz|\
        minimizz|максимиз|минимиз|最大化|最小化|최대화|최소화"),
    (Algo, W, "efficient", "effizient|eficiente|efficace|эффективн|高效|効率|효율"),
    (Debug, S, "deadlock", "interblocage|взаимоблокиров|死锁|デッドロック|교착"),
    (Debug, S, "race condition", "condición de carrera|condition de course|condição de corrida|\
        состояние гонки|гонка данных|竞态|競合状態|경쟁 상태"),
    (Debug, M, "concurrency", "nebenläufig|concurrencia|concurrence|concorrência|concorrenza|\
        многопоточн|并发|多线程|並行|スレッド|동시성|스레드"),
    (Trace, W, "error", "fehler|erreur|errore|ошибк|错误|报错|エラー|에러|오류"),
    (Why, W, "why", "warum|wieso|weshalb|por qué|pourquoi|por que|perché|почему|为什么|为何|\
        なぜ|どうして|왜"),
    (Puzzle, M, "puzzle", "rätsel|acertijo|enigma|énigme|головоломк|загадк|谜题|谜语|パズル|なぞなぞ|\
        퍼즐|수수께끼"),
    (Puzzle, M, "liar", "lügner|mentiroso|menteur|mentitore|лжец|说谎|撒谎|嘘つき|正直者|거짓말"),
    (Puzzle, M, "knights", "ritter|caballeros|chevaliers|cavaleiros|cavalieri|рыцар|骑士|騎士"),
    (Puzzle, W, "logic", "logik|lógic|logique|логик|逻辑|論理|논리"),
    (Puzzle, M, "deduce", "folgere|schlussfolger|deducir|deduzca|déduire|déduis|deduzir|dedurre|\
        推理|推論|추론"),
    (Constraint, W, "must", "muss|müssen|darf nicht|dürfen nicht|debe |deben |no puede|doit|doivent|\
        ne peut pas|deve |devem|não pode|non può|devono|должен|должна|должны|нельзя|不能|必须|不得|\
        なければ|してはいけない|해야|안 된다"),
    (Constraint, W, "at least", "mindestens|höchstens|al menos|como máximo|como mínimo|au moins|\
        au plus|pelo menos|no máximo|almeno|al massimo|не менее|не более|по крайней мере|至少|最多|\
        至多|不超过|少なくとも|최소|최대"),
    (Constraint, W, "exactly", "genau |exactamente|exactement|exatamente|esattamente|ровно|恰好|正好|\
        ちょうど|정확히"),
    (Constraint, W, "next to", "neben dem|neben der|nebeneinander|junto a|al lado|à côté|ao lado|accanto|рядом|相邻|隣|옆"),
    (Sched, W, "schedule", "zeitplan|stundenplan|dienstplan|horario|calendrier|cronograma|orario|\
        расписани|安排|日程|时间表|スケジュール|일정"),
    (Who, W, "who", "wer |welche|quién|quiénes|cuál|quem |chi |quale|кто |谁|誰|누가|누구"),
    (Quant, M, "speed", "geschwindigkeit|velocidad|vitesse|velocidade|velocità|скорост|速度|속도|속력"),
    (Quant, M, "interest rate", "zinssatz|zinsen|tasa de interés|taux d'intérêt|intérêts|taxa de juros|\
        juros|tasso di interesse|процентная ставка|利息|利率|利子|金利|이자|금리"),
    (Quant, W, "average", "durchschnitt|promedio|moyenne|média|средн|平均|평균"),
    (Quant, W, "percent", "prozent|por ciento|porcentaje|pour cent|pourcentage|por cento|percentuale|\
        процент|百分之|パーセント|퍼센트"),
    (Quant, W, "train", "zug |tren |trem |treno|поезд|火车|列車|電車|기차|열차"),
    (Ask, W, "calculate", "berechne|ausrechnen|calcular|calcule|calculez|calculer|calcola|вычисл|\
        рассчита|посчита|计算|算出|計算|계산|구하"),
    (Ask, W, "find", "bestimme|bestimmen sie|ermittle|halla|halle|encuentre|trouvez|trovate|\
        encontre|найдите|найти|определите|求出|求める|求めよ|求めなさい|구하시오|구하라"),
    (Constraint, W, "condition", "bedingung|condición|conditions suivantes|condição|condizione|\
        условие|условия|удовлетворя|满足|条件|満たす|ただし|조건|만족"),
    (Ask, W, "how many", "wie viele|wie viel|cuántos|cuántas|cuánto|combien|quantos|quantas|quanto|\
        quanti|quante|сколько|多少|几个|いくつ|何個|何人|몇"),
    (Step, M, "step by step", "schritt für schritt|paso a paso|étape par étape|passo a passo|\
        passo dopo passo|шаг за шагом|пошагово|一步一步|逐步|ステップバイステップ|段階的|단계별|차근차근"),
    (Step, M, "justify", "begründe|justifique|justificar|justifiez|justifier|giustific|обоснуй|обоснова|\
        说明理由|근거"),
    (Greet, M, "hello", "olá|buongiorno|buenas|привет|здравствуй|спасибо|你好|您好|谢谢|こんにちは|\
        ありがとう|おはよう|안녕|감사합니다|고마워"),
    (Rewrite, S, "rewrite", "umschreiben|umformulier|reformul|reescrib|réécri|reescrev|riscriv|riformul|\
        перепиши|перефразир|改写|重写|润色|書き直|言い換え|다시 써|고쳐 써"),
    (Rewrite, S, "reformat", "formatier|umformatier|formatea|formatee|mettre en forme|mets en forme|\
        mettez en forme|formatta|отформатир|排版|整形して|서식을"),
    // Imperatives only: "ich kann das nicht lösen", "sans la résoudre, montrer que", 别解
    // ("another solution"), 不要解题过程 ("skip the working", still a solve) and 解かなくては
    // ("must solve") belong to reasoning requests. (CJK stems match anywhere: 整形 alone is
    // inside 调整形状, 서식 inside 서식지.)
    (Rewrite, S, "do not solve", "löse sie nicht|löse es nicht|löse die aufgabe nicht|\
        no la resuelvas|no lo resuelvas|no las resuelvas|ne la résous pas|ne le résous pas|\
        ne les résous pas|non risolverl|не решай|не надо решать|解かないで|풀지 마|풀지 말"),
    (Rewrite, M, "proofread", "korrigier|korrekturles|corrige|corrija|корректур|校对|校正|교정|맞춤법"),
    (Rewrite, M, "grammar", "grammatik|gramática|grammaire|grammatica|грамматик|语法|文法|문법"),
    (Translate, S, "translate", "übersetz|tradu|переведи|перевести|перевод текста|翻译|译成|翻訳|\
        訳して|번역"),
    (Summarize, S, "summarize", "zusammenfass|resumen|resumir|resuma|resume el|resume este|resumo|résum|riassum|sintetizz|кратко изложи|резюмир|\
        перескажи|总结|概括|摘要|要約|요약"),
    (Creative, M, "poem", "gedicht|poema|poème|poesia|стихотворени|стих|诗|詩|俳句"),
    (Creative, M, "story", "geschichte über|cuento|histoire|história sobre|storia su|рассказ|сказк|\
        故事|物語|이야기"),
    (Creative, M, "email", "e-mail an|correo|courriel|письмо|邮件|メール|이메일|anschreiben|\
        bewerbung|carta de|lettre de|lettera di"),
    (Creative, M, "song", "liedtext|canción|chanson|canção|canzone|песн|歌词|歌詞|노래"),
    (Lookup, M, "capital of", "hauptstadt|capital de|capitale de|capitale d|capitale della|столиц|首都|수도"),
    (Lookup, M, "who was", "wer war|quién fue|qui était|quem foi|chi era|кто такой|кто был|是谁|とは何|\
        란 무엇"),
    (Explain, M, "explain", "erklär|explica|expliqu|spiega|объясн|解释|解釋|解説|説明|설명"),
    (Explain, M, "recommend", "empfiehl|empfehl|recomiend|recomend|recommand|consigli|посовет|\
        порекоменд|推荐|おすすめ|추천"),
    (CodeVerb, W, "write", "schreib|escrib|écri|escrev|scriv|напиш|写一|書いて|작성"),
    (CodeNoun, W, "function", "funktion|función|fonction|função|funzione|функци|函数|関数|함수|\
        programa|скрипт|программ|程序|代码|プログラム|コード|프로그램|코드"),
];

pub(super) struct Lexicon {
    stems: Stems,
    /// Per pattern: its group and whether it must start a word.
    patterns: Vec<(u16, bool)>,
}

/// Distinct groups one scan reports at most (more are ignored: a text that hits this many
/// has said what it is).
pub(super) const MAX_HITS: usize = 16;

/// What one scan found: the distinct groups, in order of first appearance.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Hits {
    groups: [u16; MAX_HITS],
    len: usize,
}

impl Hits {
    pub(super) fn groups(&self) -> &[u16] {
        &self.groups[..self.len]
    }
}

/// Chinese and Japanese stems need no word start: those scripts do not space words. Korean
/// does (particles are glued to the end), so Hangul stems start a word like Latin ones.
fn needs_word_start(stem: &str) -> bool {
    !stem
        .chars()
        .next()
        .is_some_and(|c| matches!(c as u32, 0x3040..=0x30FF | 0x3400..=0x9FFF))
}

/// A stem, its group and whether it must start a word.
type Pattern = (String, u16, bool);

/// The stems in pattern-id order.
fn patterns() -> Vec<Pattern> {
    let mut out = Vec::new();
    for (g, &(_, _, _, list)) in GROUPS.iter().enumerate() {
        let group = u16::try_from(g).expect("fewer than 65536 groups");
        for stem in list.split('|') {
            // Line continuations leave leading spaces; a trailing space is meaningful
            // ("wer " is not "werden").
            let stem = stem.trim_start();
            debug_assert!(!stem.is_empty(), "empty stem in group {g}");
            let boundary = needs_word_start(stem);
            out.push((stem.to_string(), group, boundary));
            // The scanned text is only ASCII-lowercased: a capital Ü, É or Д at the
            // start of a sentence needs its own pattern.
            let mut chars = stem.chars();
            if let Some(first) = chars.next().filter(|c| !c.is_ascii()) {
                let upper: String = first.to_uppercase().chain(chars).collect();
                if upper != stem {
                    out.push((upper, group, boundary));
                }
            }
        }
    }
    out
}

impl Lexicon {
    fn build() -> Lexicon {
        let all = patterns();
        // An Aho-Corasick automaton (the `aho-corasick` crate) did this before: its NFA
        // steps through every byte, ~45 instructions a byte; its DFA needed 3.6 MB. The
        // trie is walked from word starts only (`stems`), a few instructions a byte.
        let stems = Stems::new(all.iter().map(|(s, _, b)| (s.as_str(), *b)));
        let patterns = all.iter().map(|&(_, g, b)| (g, b)).collect();
        Lexicon { stems, patterns }
    }

    /// Scans ASCII-lowercased `text`.
    pub(super) fn scan(&self, text: &[u8]) -> Hits {
        // Per group found, the first occurrence in an overlapping scan's order: by end,
        // then longest, then pattern id (see `stems`). Empty, so no allocation, unless a
        // stem occurs.
        let mut first: Vec<((usize, usize, u32), u16)> = Vec::new();
        self.stems.scan(text, |f| {
            let (group, boundary) = self.patterns[f.pattern as usize];
            if boundary && !f.at_word {
                return;
            }
            let key = (f.end, f.start, f.pattern);
            match first.iter_mut().find(|e| e.1 == group) {
                Some(e) => e.0 = e.0.min(key),
                None => first.push((key, group)),
            }
        });
        first.sort_unstable_by_key(|e| e.0);
        let mut hits = Hits::default();
        for (_, group) in first.into_iter().take(MAX_HITS) {
            hits.groups[hits.len] = group;
            hits.len += 1;
        }
        hits
    }
}

pub(super) fn lexicon() -> &'static Lexicon {
    static LEXICON: OnceLock<Lexicon> = OnceLock::new();
    LEXICON.get_or_init(Lexicon::build)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<&'static str> {
        let mut lower = text.to_string();
        lower.make_ascii_lowercase();
        let hits = lexicon().scan(lower.as_bytes());
        hits.groups()
            .iter()
            .map(|&g| GROUPS[usize::from(g)].2)
            .collect()
    }

    #[test]
    fn stems_find_inflected_forms_in_each_language() {
        for (text, gloss) in [
            (
                "Beweisen Sie, dass es unendlich viele Primzahlen gibt.",
                "prove",
            ),
            ("Demuestra que la raíz de 2 es irracional.", "prove"),
            ("Démontrez que la suite converge.", "prove"),
            ("Dimostra che n^2 - n è sempre pari.", "prove"),
            ("Demonstre que a soma dos ângulos é 180 graus.", "prove"),
            ("Докажите, что простых чисел бесконечно много.", "prove"),
            ("请证明根号2是无理数。", "prove"),
            ("√2が無理数であることを証明せよ。", "prove"),
            ("2의 제곱근이 무리수임을 증명하시오.", "prove"),
            ("Übersetze bitte diesen Text ins Englische.", "translate"),
            ("Пожалуйста, переведи это на английский.", "translate"),
        ] {
            assert!(found(text).contains(&gloss), "{text}: {:?}", found(text));
        }
    }

    #[test]
    fn alphabetic_stems_must_start_a_word() {
        assert!(!found("ein Gegenbeweis").contains(&"prove"));
        assert!(found("wer hat das geschrieben").contains(&"who"));
        assert!(!found("werden wir sehen").contains(&"who"));
    }

    #[test]
    fn the_matcher_stays_small() {
        // Built once per process and resident (issue 11: idle RSS budget).
        let bytes = lexicon().stems.memory_usage();
        assert!(bytes < 1 << 20, "{bytes} bytes");
    }

    /// The scan as it was done before `stems`: an Aho-Corasick overlapping scan, groups in
    /// order of first report. The trie must find the same groups in the same order.
    fn reference_scan(text: &[u8]) -> Vec<u16> {
        use aho_corasick::{AhoCorasick, MatchKind};
        static AC: OnceLock<(AhoCorasick, Vec<Pattern>)> = OnceLock::new();
        let (ac, all) = AC.get_or_init(|| {
            let all = patterns();
            let ac = AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .build(all.iter().map(|p| &p.0))
                .expect("the stems build an automaton");
            (ac, all)
        });
        let mut groups = Vec::new();
        for m in ac.find_overlapping_iter(text) {
            let (_, group, boundary) = all[m.pattern().as_usize()];
            if boundary && !super::super::stems::starts_word(text, m.start()) {
                continue;
            }
            if !groups.contains(&group) && groups.len() < MAX_HITS {
                groups.push(group);
            }
        }
        groups
    }

    #[test]
    fn the_trie_reports_what_the_automaton_did() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut texts: Vec<String> = Vec::new();
        for dir in ["data/heldout", "data/written", "src/classify/testdata"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
                continue;
            };
            for entry in entries.flatten() {
                if let Ok(body) = std::fs::read_to_string(entry.path()) {
                    texts.extend(body.lines().map(str::to_string));
                }
            }
        }
        // Every stem in a row, glued and spaced, capitalised and not: overlapping stems,
        // stems inside words, several at one end position, more than `MAX_HITS` groups.
        let stems: Vec<String> = patterns().into_iter().map(|p| p.0).collect();
        for sep in ["", " ", "x", "。"] {
            texts.push(stems.join(sep));
            texts.push(stems.iter().rev().cloned().collect::<Vec<_>>().join(sep));
        }
        assert!(texts.len() > 1000);
        for text in &texts {
            let mut lower = text.clone();
            lower.make_ascii_lowercase();
            let got = lexicon().scan(lower.as_bytes()).groups().to_vec();
            assert_eq!(got, reference_scan(lower.as_bytes()), "{text}");
        }
    }

    #[test]
    fn stems_are_not_english() {
        let english = "Prove that the algorithm is optimal. Why does the program crash? \
            Calculate the probability. Explain recursion. Translate and summarize the report. \
            Write a poem, a story and an email. Resolve the error. Who won? Schedule meetings.";
        let hits = found(english);
        assert!(hits.is_empty(), "{hits:?}");
    }
}
