//! Token-level concatenation of text pieces that equals tokenizing the concatenated text.
//!
//! Each piece's untouched middle tokens are copied as they are; the few pre-tokens on each side
//! of every join are gathered into a small window that is tokenized as text, so merges across a
//! join (".\n\n" absorbing a separator's newlines, a space before a word, NFC composing a
//! combining mark) come out exactly as the tokenizer makes them on the whole string.

use std::ops::Range;

use tokenizers::Tokenizer;

use super::tokenized::Tokenized;

/// Builds one token sequence (ids + loss mask) from pieces.
pub struct Joiner<'t> {
    tok: &'t Tokenizer,
    margin: usize,
    window: String,
    /// Byte ranges of `window` whose tokens are in the loss mask.
    masked: Vec<Range<usize>>,
    /// Output ids.
    pub ids: Vec<u32>,
    /// Output mask (1 = trained on).
    pub mask: Vec<u8>,
    /// Windows tokenized so far.
    pub windows: u64,
    /// Tokens produced by windows (the rest were copied from cores).
    pub window_tokens: u64,
}

impl<'t> Joiner<'t> {
    /// A joiner leaving `margin` pre-tokens on each side of a join to re-tokenize.
    pub fn new(tok: &'t Tokenizer, margin: usize) -> Self {
        Joiner {
            tok,
            margin: margin.max(1),
            window: String::new(),
            masked: Vec::new(),
            ids: Vec::new(),
            mask: Vec::new(),
            windows: 0,
            window_tokens: 0,
        }
    }

    /// Starts a new sequence, keeping the buffers' capacity.
    pub fn clear(&mut self) {
        self.window.clear();
        self.masked.clear();
        self.ids.clear();
        self.mask.clear();
    }

    /// Appends raw text (it will be tokenized with its neighbours).
    pub fn text(&mut self, s: &str, masked: bool) {
        if s.is_empty() {
            return;
        }
        let start = self.window.len();
        self.window.push_str(s);
        if masked {
            match self.masked.last_mut() {
                Some(r) if r.end == start => r.end = self.window.len(),
                _ => self.masked.push(start..self.window.len()),
            }
        }
    }

    /// Appends bytes `span` of text `t` of `set` (whose full text is `text`).
    pub fn piece(
        &mut self,
        set: &Tokenized,
        t: usize,
        text: &str,
        span: Range<usize>,
        masked: bool,
    ) -> Result<(), String> {
        let (b0, b1) = (span.start, span.end);
        if b0 >= b1 {
            return Ok(());
        }
        let Some(core) = set.core(t, b0, b1, self.margin) else {
            self.text(&text[b0..b1], masked);
            return Ok(());
        };
        // The window before the core is tokenized with the core's next pre-token as right context
        // (a regex lookahead such as `\s+(?!\S)` reads past the window); if the tokens do not
        // break exactly where the core starts, the core gives up its first pre-token and we retry.
        let mut head = core.tokens.start;
        self.text(&text[b0..core.head_end], masked);
        loop {
            let next = next_word(set, head, core.tokens.end);
            let start = set.starts[head] as usize;
            let lookahead_end = if next < core.tokens.end {
                set.starts[next] as usize
            } else {
                core.tail_start
            };
            if self.flush_before(&text[start..lookahead_end])? {
                break;
            }
            self.text(&text[start..lookahead_end], masked);
            head = next;
            if head >= core.tokens.end {
                // No break point inside the core: the whole rest of the piece is window text.
                self.text(&text[core.tail_start..b1], masked);
                return Ok(());
            }
        }
        self.ids.extend_from_slice(&set.ids[head..core.tokens.end]);
        self.mask
            .extend(std::iter::repeat_n(masked as u8, core.tokens.end - head));
        self.text(&text[core.tail_start..b1], masked);
        Ok(())
    }

    /// Tokenizes the pending window followed by `lookahead` (text that comes next and is not
    /// appended), keeping the window's tokens; `false` (and nothing emitted) when no token
    /// boundary falls exactly at the window's end.
    fn flush_before(&mut self, lookahead: &str) -> Result<bool, String> {
        if self.window.is_empty() {
            return Ok(true);
        }
        let end = self.window.len();
        self.window.push_str(lookahead);
        let enc = self
            .tok
            .encode(self.window.as_str(), false)
            .map_err(|e| e.to_string());
        self.window.truncate(end);
        let enc = enc?;
        let offsets = enc.get_offsets();
        let cut = offsets.partition_point(|o| o.0 < end);
        let aligned = cut == offsets.len() || offsets[cut].0 == end;
        let straddles = cut > 0 && offsets[cut - 1].1 > end;
        if !aligned || straddles {
            return Ok(false);
        }
        self.emit(&enc.get_ids()[..cut], &offsets[..cut]);
        Ok(true)
    }

    fn emit(&mut self, ids: &[u32], offsets: &[(usize, usize)]) {
        self.windows += 1;
        self.window_tokens += ids.len() as u64;
        for (&id, &(s, e)) in ids.iter().zip(offsets) {
            let m = self.masked.iter().any(|r| s < r.end && r.start < e);
            self.ids.push(id);
            self.mask.push(m as u8);
        }
        self.window.clear();
        self.masked.clear();
    }

    /// Tokenizes the pending window (at the end of the sequence) and appends its tokens.
    pub fn flush(&mut self) -> Result<(), String> {
        if self.window.is_empty() {
            return Ok(());
        }
        let enc = self
            .tok
            .encode(self.window.as_str(), false)
            .map_err(|e| e.to_string())?;
        self.emit(enc.get_ids(), enc.get_offsets());
        Ok(())
    }
}

/// The tokenizer's added tokens (specials), to find one formed across a join.
pub struct Specials {
    matcher: aho_corasick::AhoCorasick,
    max_len: usize,
}

impl Specials {
    /// The added tokens of `tok` (`None` if it has none longer than one byte).
    pub fn new(tok: &Tokenizer) -> Option<Self> {
        let mut words: Vec<String> = tok
            .get_added_tokens_decoder()
            .values()
            .map(|t| t.content.clone())
            .filter(|c| c.len() > 1)
            .collect();
        words.sort();
        let max_len = words.iter().map(String::len).max()?;
        let matcher = aho_corasick::AhoCorasick::new(&words).ok()?;
        Some(Specials { matcher, max_len })
    }

    /// Whether an added token's text starts in one piece and ends in a later one: the tokenizer
    /// would then split the joined text around it, which no join window can reproduce.
    pub fn crosses(&self, pieces: &[&str]) -> bool {
        let keep = self.max_len - 1;
        let mut tail = String::new();
        for (i, s) in pieces.iter().enumerate() {
            if s.is_empty() {
                continue;
            }
            if !tail.is_empty() {
                let mut hay = tail.clone();
                let join = hay.len();
                for t in &pieces[i..] {
                    let need = keep.saturating_sub(hay.len() - join);
                    if need == 0 {
                        break;
                    }
                    let mut cut = need.min(t.len());
                    while !t.is_char_boundary(cut) {
                        cut += 1;
                    }
                    hay.push_str(&t[..cut]);
                }
                if self
                    .matcher
                    .find_overlapping_iter(&hay)
                    .any(|m| m.start() < join && m.end() > join)
                {
                    return true;
                }
            }
            tail.push_str(s);
            if tail.len() > keep {
                let mut cut = tail.len() - keep;
                while !tail.is_char_boundary(cut) {
                    cut += 1;
                }
                tail.drain(..cut);
            }
        }
        false
    }
}

/// Index of the first word-start token after `i` (or `end`).
fn next_word(set: &Tokenized, i: usize, end: usize) -> usize {
    let mut j = i + 1;
    while j < end && !set.word_start[j] {
        j += 1;
    }
    j
}
