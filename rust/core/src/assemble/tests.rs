//! Tests of the token-level joiner and the assembler on a byte-level BPE built here (GPT-4/Qwen2
//! style pre-tokenizer regex, NFC, a special token), so they run without any file.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int8Type};
use arrow_array::{Array, ArrayRef, Int32Array, StringArray, UInt32Array};
use proptest::prelude::*;
use tokenizers::Tokenizer;

use super::joiner::{Joiner, Specials};
use super::tokenized::Tokenized;
use super::{
    load_tokenizer, AssembleError, AssembleOptions, Assembler, Budget, LongDocuments, SampleBatch,
    TemplateTexts,
};

const PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The test tokenizer, parsed for assembly.
fn shared_tokenizer() -> Arc<Tokenizer> {
    Arc::new(load_tokenizer(&tokenizer_json()).expect("test tokenizer parses"))
}

/// The tokenizer.json of a byte-level BPE: the 256 byte symbols plus merges of frequent pairs.
fn tokenizer_json() -> String {
    // GPT-2's byte-to-unicode map.
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32).collect();
    bs.extend(0xA1..=0xAC);
    bs.extend(0xAE..=0xFF);
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut sym = vec![' '; 256];
    for (b, c) in bs.iter().zip(&cs) {
        sym[*b as usize] = char::from_u32(*c).unwrap_or('?');
    }
    let mut vocab: Vec<String> = sym.iter().map(|c| c.to_string()).collect();
    let enc = |s: &str| -> String { s.bytes().map(|b| sym[b as usize]).collect() };
    let mut merges = Vec::new();
    for pair in [
        (" ", "t"),
        ("t", "h"),
        (" t", "h"),
        ("e", "r"),
        ("\n", "\n"),
        (" ", " "),
        ("=", "="),
        ("==", "="),
        ("i", "n"),
        ("in", "g"),
        (".", "\n"),
        (".\n", "\n"),
        (" ", "a"),
        ("a", "b"),
    ] {
        let (l, r) = (enc(pair.0), enc(pair.1));
        if !vocab.contains(&(l.clone() + &r)) {
            vocab.push(l.clone() + &r);
            merges.push((l, r));
        }
    }
    let special_id = vocab.len();
    let vocab_json: Vec<String> = vocab
        .iter()
        .enumerate()
        .map(|(i, t)| format!("{}:{i}", json_str(t)))
        .collect();
    let merges_json: Vec<String> = merges
        .iter()
        .map(|(l, r)| format!("[{},{}]", json_str(l), json_str(r)))
        .collect();
    format!(
        r#"{{"version":"1.0","truncation":null,"padding":null,
        "added_tokens":[{{"id":{special_id},"content":"<|end|>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}}],
        "normalizer":{{"type":"NFC"}},
        "pre_tokenizer":{{"type":"Sequence","pretokenizers":[
            {{"type":"Split","pattern":{{"Regex":{pattern}}},"behavior":"Isolated","invert":false}},
            {{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":false}}]}},
        "post_processor":{{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}},
        "decoder":{{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}},
        "model":{{"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":null,
            "end_of_word_suffix":null,"fuse_unk":false,"byte_fallback":false,"ignore_merges":false,
            "vocab":{{{vocab}}},"merges":[{merges}]}}}}"#,
        pattern = json_str(PATTERN),
        vocab = vocab_json.join(","),
        merges = merges_json.join(","),
    )
}

fn tokenizer() -> Tokenizer {
    let mut tok: Tokenizer = tokenizer_json().parse().expect("test tokenizer parses");
    tok.with_post_processor(None::<tokenizers::PostProcessorWrapper>);
    tok
}

fn ids(tok: &Tokenizer, s: &str) -> Vec<u32> {
    tok.encode(s, false).expect("encodes").get_ids().to_vec()
}

/// Text fragments that stress joins.
fn fragment() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "a", "b", "the", "ab", "ing", "été", "e\u{301}", "\u{301}", "東京", "42", "7", ".", "..",
        "!?", "'s", "'ll", "==", "===", " ", "  ", "\n", "\n\n", "\t", "\r\n", "\u{a0}",
        "\u{3000}", "<|end|>", "<|en", "d|>", "x",
    ])
    .prop_map(str::to_string)
}

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(fragment(), 0..12).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Joining pieces token-wise equals tokenizing the joined text (with the margin the
    /// assembler uses).
    #[test]
    fn joined_pieces_equal_whole_text(pieces in prop::collection::vec(text(), 1..6), masks in prop::collection::vec(any::<bool>(), 6)) {
        let tok = tokenizer();
        let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
        let set = Tokenized::encode_all(&tok, &refs).expect("encodes");
        let mut j = Joiner::new(&tok, 2);
        // An added token spelled across a join is the assembler's whole-text case.
        let whole = Specials::new(&tok).is_some_and(|s| s.crosses(&refs));
        for (t, p) in pieces.iter().enumerate() {
            if whole {
                j.text(p, masks[t]);
            } else {
                j.piece(&set, t, p, 0..p.len(), masks[t]).expect("joins");
            }
        }
        j.flush().expect("flushes");
        let whole: String = pieces.concat();
        prop_assert_eq!(&j.ids, &ids(&tok, &whole));
        prop_assert_eq!(j.mask.len(), j.ids.len());
        // Tokens of a piece that is not masked and is not next to a masked one carry mask 0.
        if masks.iter().take(pieces.len()).all(|m| !m) {
            prop_assert!(j.mask.iter().all(|&m| m == 0));
        }
    }

    /// A core is a run of the text's own tokens strictly inside the range.
    #[test]
    fn core_is_inside_and_word_aligned(s in text(), margin in 1usize..4) {
        let tok = tokenizer();
        let set = Tokenized::encode_all(&tok, &[s.as_str()]).expect("encodes");
        if let Some(core) = set.core(0, 0, s.len(), margin) {
            prop_assert!(core.head_end > 0 && core.head_end <= core.tail_start && core.tail_start < s.len());
            prop_assert!(set.word_start[core.tokens.start] && set.word_start[core.tokens.end]);
            prop_assert_eq!(set.starts[core.tokens.start] as usize, core.head_end);
        }
    }
}

fn strings(v: &[&str]) -> ArrayRef {
    Arc::new(StringArray::from(v.to_vec()))
}

fn template() -> TemplateTexts {
    TemplateTexts {
        prefix: "<|end|>user\n".into(),
        user_to_answer: "<|end|>\nassistant\n".into(),
        answer_end: "<|end|>".into(),
        suffix: "\n".into(),
        doc_separator: "\n\n===\n\n".into(),
        query_separator: "\n\n".into(),
        trim_user: false,
        trim_answer: false,
    }
}

fn assembler(docs: &[&str], opts: AssembleOptions) -> Result<Assembler, AssembleError> {
    Assembler::new(shared_tokenizer(), template(), strings(docs), None, opts)
}

#[test]
fn assembled_sample_equals_rendered_text_and_masks_the_answer() {
    let docs = ["First doc.", "Second one\n", "third: 42!"];
    let mut opts = AssembleOptions::new(10_000);
    opts.budget = Budget::Count { min: 2, max: 2 };
    let a = assembler(&docs, opts).expect("builds");
    let gold = Int32Array::from(vec![0, 1, 2]);
    let (q, ans) = (
        strings(&["Why?", "", "Who"]),
        strings(&["Because.", "ab", " the end"]),
    );
    let (batches, stats) = a
        .assemble(&SampleBatch {
            gold: &gold,
            gold_in_distractors: None,
            queries: &q,
            answers: &ans,
            row_offset: 0,
            reserve: None,
        })
        .expect("assembles");
    assert_eq!(stats.assembled, 3);
    let tok = tokenizer();
    let b = &batches[0];
    let ids = b.column(0).as_list::<i32>();
    let masks = b.column(1).as_list::<i32>();
    let gold_pos = b.column(3).as_primitive::<Int32Type>();
    for row in 0..3 {
        // Rebuild the text: all three documents, gold at its position, others in draw order.
        let got: Vec<u32> = ids
            .value(row)
            .as_primitive::<Int32Type>()
            .values()
            .iter()
            .map(|&x| x as u32)
            .collect();
        let mask: Vec<i8> = masks
            .value(row)
            .as_primitive::<Int8Type>()
            .values()
            .to_vec();
        let answer = ["Because.", "ab", " the end"][row];
        let masked: Vec<u32> = got
            .iter()
            .zip(&mask)
            .filter(|(_, &m)| m == 1)
            .map(|(&t, _)| t)
            .collect();
        let mut expect_masked = ids_of(&tok, answer);
        expect_masked.extend(ids_of(&tok, "<|end|>"));
        assert_eq!(masked, expect_masked, "row {row}");
        assert!((0..3).contains(&gold_pos.value(row)));
        let text = tok.decode(&got, false).expect("decodes");
        assert_eq!(
            ids_of(&tok, &text),
            got,
            "row {row}: ids are the tokenization of their text"
        );
        assert!(text.starts_with("<|end|>user\n") && text.ends_with("<|end|>\n"));
        assert_eq!(text.matches("\n\n===\n\n").count(), 2);
        assert!(text.contains(docs[row]));
    }
}

fn ids_of(tok: &Tokenizer, s: &str) -> Vec<u32> {
    ids(tok, s)
}

#[test]
fn same_seed_same_output_any_threads_and_offsets() {
    let docs: Vec<String> = (0..20)
        .map(|i| format!("doc {i} {}", "ab ".repeat(i)))
        .collect();
    let refs: Vec<&str> = docs.iter().map(String::as_str).collect();
    let run = |threads: usize, split: usize| {
        let mut opts = AssembleOptions::new(400);
        opts.budget = Budget::Tokens { min: 50, max: 300 };
        opts.num_threads = Some(threads);
        let a = assembler(&refs, opts).expect("builds");
        let mut out = Vec::new();
        for (lo, hi) in [(0, split), (split, 20)] {
            let gold = Int32Array::from((lo as i32..hi as i32).collect::<Vec<_>>());
            let q = strings(&vec!["q?"; hi - lo]);
            let (batches, _) = a
                .assemble(&SampleBatch {
                    gold: &gold,
                    gold_in_distractors: None,
                    queries: &q,
                    answers: &q,
                    row_offset: lo as u64,
                    reserve: None,
                })
                .expect("assembles");
            for b in batches {
                out.push(b.column(0).to_data());
            }
        }
        out.into_iter()
            .flat_map(|d| {
                arrow_array::make_array(d)
                    .as_list::<i32>()
                    .iter()
                    .map(|v| v.map(|a| a.to_data()))
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    let a = run(1, 20);
    assert_eq!(a, run(2, 7));
    assert_eq!(a, run(2, 1));
}

#[test]
fn bad_input_names_the_row() {
    let opts = AssembleOptions::new(100);
    assert!(matches!(
        assembler(&["ok", " \n\u{1c}"], opts.clone()),
        Err(AssembleError::EmptyDocument { row: 1, .. })
    ));
    assert!(matches!(
        load_tokenizer("{"),
        Err(AssembleError::Tokenizer(_))
    ));
    let a = assembler(&["ok"], opts.clone()).expect("builds");
    let gold = Int32Array::from(vec![0, 5]);
    let q = strings(&["q", "q"]);
    let err = a
        .assemble(&SampleBatch {
            gold: &gold,
            gold_in_distractors: None,
            queries: &q,
            answers: &q,
            row_offset: 0,
            reserve: None,
        })
        .err();
    assert_eq!(
        err,
        Some(AssembleError::GoldOutOfRange {
            row: 1,
            index: 5,
            pool: 1
        })
    );
    let nulls: ArrayRef = Arc::new(StringArray::from(vec![Some("q"), None]));
    let gold = Int32Array::from(vec![0, 0]);
    let err = a
        .assemble(&SampleBatch {
            gold: &gold,
            gold_in_distractors: None,
            queries: &q,
            answers: &nulls,
            row_offset: 0,
            reserve: None,
        })
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some("answer row 1 is null; drop or fill such rows before assembling")
    );
    let mut bad = opts;
    bad.budget = Budget::Tokens { min: 9, max: 3 };
    bad.long_documents = LongDocuments::Skip;
    assert!(matches!(
        assembler(&["ok"], bad),
        Err(AssembleError::InvalidArgument(_))
    ));
    assert!(gold.len() == 2);
}

#[test]
fn reserve_leaves_room_after_the_answer_and_zero_changes_nothing() {
    let docs: Vec<String> = (0..40)
        .map(|i| format!("Document {i} says the river runs north past the mill."))
        .collect();
    let docs: Vec<&str> = docs.iter().map(String::as_str).collect();
    let mut opts = AssembleOptions::new(120);
    opts.budget = Budget::Tokens { min: 100, max: 120 };
    let a = assembler(&docs, opts).expect("builds");
    let gold = Int32Array::from((0..8).collect::<Vec<i32>>());
    let q = strings(&["Why?"; 8]);
    let ans = strings(&["Because."; 8]);
    let run = |reserve: Option<&UInt32Array>| {
        let (batches, stats) = a
            .assemble(&SampleBatch {
                gold: &gold,
                gold_in_distractors: None,
                queries: &q,
                answers: &ans,
                row_offset: 0,
                reserve,
            })
            .expect("assembles");
        let lengths: Vec<usize> = batches
            .iter()
            .flat_map(|b| {
                let ids = b.column(0).as_list::<i32>().clone();
                (0..ids.len()).map(move |r| ids.value(r).len())
            })
            .collect();
        (lengths, stats)
    };
    let (plain, _) = run(None);
    let zeros = UInt32Array::from(vec![0u32; 8]);
    assert_eq!(run(Some(&zeros)).0, plain);
    let forty = UInt32Array::from(vec![40u32; 8]);
    let (reserved, _) = run(Some(&forty));
    assert!(reserved.iter().all(|&n| n + 40 <= 120), "{reserved:?}");
    assert!(reserved.iter().zip(&plain).any(|(r, p)| r < p));
    let all = UInt32Array::from(vec![500u32; 8]);
    let (_, stats) = run(Some(&all));
    assert_eq!((stats.assembled, stats.skipped_long), (0, 8));
    let short = UInt32Array::from(vec![1u32; 3]);
    let err = a
        .assemble(&SampleBatch {
            gold: &gold,
            gold_in_distractors: None,
            queries: &q,
            answers: &ans,
            row_offset: 0,
            reserve: Some(&short),
        })
        .err()
        .map(|e| e.to_string());
    assert!(err.is_some_and(|e| e.contains("reserve has 3 entries for 8 samples")));
}
