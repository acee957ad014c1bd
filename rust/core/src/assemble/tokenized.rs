//! Texts tokenized once, with where each pre-token ("word") starts, so that pieces of them can be
//! joined later without re-tokenizing whole texts.
//!
//! A byte-level BPE tokenizer (Qwen2, Llama 3, GPT-2 style) first splits text into pre-tokens with
//! a regex, then merges bytes *inside* each pre-token. Appending text to a string can therefore only
//! change the last pre-tokens before the join (the regex is greedy over runs of one character
//! class: whitespace, letters, punctuation+newlines), and prepending only the first ones. Each
//! [`Tokenized`] text keeps the byte offset of every token and whether it opens a pre-token, so a
//! joiner can reuse the untouched middle tokens ("core") of a piece and re-tokenize just a few
//! pre-tokens on each side of every join.

use std::ops::Range;

use rayon::prelude::*;
use tokenizers::Tokenizer;

/// Token ids of many texts, concatenated, with per-token byte offsets and word-start flags.
#[derive(Debug, Default, Clone)]
pub struct Tokenized {
    /// Token ids of all texts, text after text.
    pub ids: Vec<u32>,
    /// Byte offset (in its own text) where each token starts.
    pub starts: Vec<u32>,
    /// Whether each token opens a pre-token.
    pub word_start: Vec<bool>,
    /// `offsets[t]..offsets[t + 1]` are the tokens of text `t`.
    pub offsets: Vec<usize>,
}

/// Why a text could not be tokenized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizeFailure {
    /// Index of the text in the input.
    pub index: usize,
    /// The tokenizer's message.
    pub message: String,
}

/// One text's encoding, before concatenation.
type Encoded = (Vec<u32>, Vec<u32>, Vec<bool>);

/// Encodes one text without special tokens: ids, token start bytes, word-start flags.
pub fn encode_one(tok: &Tokenizer, text: &str) -> Result<Encoded, String> {
    if text.len() > u32::MAX as usize {
        return Err(format!(
            "text of {} bytes is over the 4 GiB limit",
            text.len()
        ));
    }
    let enc = tok.encode(text, false).map_err(|e| e.to_string())?;
    let ids = enc.get_ids().to_vec();
    let starts: Vec<u32> = enc.get_offsets().iter().map(|o| o.0 as u32).collect();
    let words = enc.get_word_ids();
    let word_start = (0..ids.len())
        .map(|i| i == 0 || words[i].is_none() || words[i] != words[i - 1])
        .collect();
    Ok((ids, starts, word_start))
}

impl Tokenized {
    /// Tokenizes `texts` in parallel on the current rayon pool; results are in input order.
    pub fn encode_all(tok: &Tokenizer, texts: &[&str]) -> Result<Self, TokenizeFailure> {
        let parts: Vec<Result<Encoded, TokenizeFailure>> = texts
            .par_iter()
            .enumerate()
            .map(|(index, text)| {
                encode_one(tok, text).map_err(|message| TokenizeFailure { index, message })
            })
            .collect();
        let mut out = Tokenized {
            offsets: Vec::with_capacity(texts.len() + 1),
            ..Default::default()
        };
        out.offsets.push(0);
        let total: usize = parts
            .iter()
            .map(|p| p.as_ref().map_or(0, |e| e.0.len()))
            .sum();
        out.ids.reserve(total);
        out.starts.reserve(total);
        out.word_start.reserve(total);
        for part in parts {
            let (ids, starts, flags) = part?;
            out.ids.extend_from_slice(&ids);
            out.starts.extend_from_slice(&starts);
            out.word_start.extend_from_slice(&flags);
            out.offsets.push(out.ids.len());
        }
        Ok(out)
    }

    /// Number of texts.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Whether there are no texts.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Token index range (into `ids`) of text `t`.
    pub fn range(&self, t: usize) -> Range<usize> {
        self.offsets[t]..self.offsets[t + 1]
    }

    /// Number of tokens of text `t`.
    pub fn count(&self, t: usize) -> usize {
        self.offsets[t + 1] - self.offsets[t]
    }

    /// The reusable middle of the byte range `b0..b1` of text `t`: token range `core` (absolute)
    /// with `starts[core.start] = head_end` and `starts[core.end] = tail_start` (or `b1` when the
    /// core runs to the end of the text), leaving `margin` pre-tokens on each side to be
    /// re-tokenized with the neighbours. `None` when the range is too short to have one.
    pub fn core(&self, t: usize, b0: usize, b1: usize, margin: usize) -> Option<Core> {
        let r = self.range(t);
        let starts = &self.starts[r.clone()];
        // Head: the `margin`-th word start strictly after b0.
        let mut i = starts.partition_point(|&s| (s as usize) <= b0);
        let mut seen = 0;
        while i < starts.len() {
            if self.word_start[r.start + i] {
                seen += 1;
                if seen == margin {
                    break;
                }
            }
            i += 1;
        }
        if i >= starts.len() {
            return None;
        }
        let head = i;
        // Tail: the `margin`-th word start, counting back, strictly before b1.
        let mut j = starts.partition_point(|&s| (s as usize) < b1);
        let mut seen = 0;
        while j > head {
            j -= 1;
            if self.word_start[r.start + j] {
                seen += 1;
                if seen == margin {
                    break;
                }
            }
        }
        if seen < margin || j <= head {
            return None;
        }
        Some(Core {
            head_end: starts[head] as usize,
            tokens: r.start + head..r.start + j,
            tail_start: starts[j] as usize,
        })
    }

    /// Largest word-start token of text `t` at local index `<= at`, as (local index, byte start).
    pub fn word_start_at_or_before(&self, t: usize, at: usize) -> (usize, usize) {
        let r = self.range(t);
        let mut i = at.min(r.len().saturating_sub(1));
        while i > 0 && !self.word_start[r.start + i] {
            i -= 1;
        }
        (i, self.starts.get(r.start + i).map_or(0, |&s| s as usize))
    }

    /// Smallest word-start token of text `t` at local index `>= at`, as (local index, byte start);
    /// `(count, text_len)` when there is none.
    pub fn word_start_at_or_after(&self, t: usize, at: usize, text_len: usize) -> (usize, usize) {
        let r = self.range(t);
        let mut i = at;
        while i < r.len() && !self.word_start[r.start + i] {
            i += 1;
        }
        if i >= r.len() {
            (r.len(), text_len)
        } else {
            (i, self.starts[r.start + i] as usize)
        }
    }
}

/// The reusable middle of a piece of text: see [`Tokenized::core`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Core {
    /// Bytes before this offset belong to the head window.
    pub head_end: usize,
    /// Absolute token indices reused as they are.
    pub tokens: Range<usize>,
    /// Bytes from this offset on belong to the tail window.
    pub tail_start: usize,
}
