//! Token-level concatenation of text pieces that equals tokenizing the concatenated text.
//!
//! Each piece's untouched middle tokens are copied as they are; the few pre-tokens on each side
//! of every join are gathered into a small window that is tokenized as text, so merges across a
//! join (".\n\n" absorbing a separator's newlines, a space before a word, NFC composing a
//! combining mark) come out exactly as the tokenizer makes them on the whole string.

use std::ops::Range;

use tokenizers::Tokenizer;

use crate::tokenized::Tokenized;

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

    /// Appends bytes `b0..b1` of text `t` of `set` (whose full text is `text`).
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
        match set.core(t, b0, b1, self.margin) {
            Some(core) => {
                self.text(&text[b0..core.head_end], masked);
                self.flush()?;
                self.ids.extend_from_slice(&set.ids[core.tokens.clone()]);
                self.mask
                    .extend(std::iter::repeat_n(masked as u8, core.tokens.len()));
                self.text(&text[core.tail_start..b1], masked);
            }
            None => self.text(&text[b0..b1], masked),
        }
        Ok(())
    }

    /// Tokenizes the pending window and appends its tokens.
    pub fn flush(&mut self) -> Result<(), String> {
        if self.window.is_empty() {
            return Ok(());
        }
        let enc = self
            .tok
            .encode(self.window.as_str(), false)
            .map_err(|e| e.to_string())?;
        self.windows += 1;
        self.window_tokens += enc.get_ids().len() as u64;
        for (&id, &(s, e)) in enc.get_ids().iter().zip(enc.get_offsets()) {
            let m = self.masked.iter().any(|r| s < r.end && r.start < e);
            self.ids.push(id);
            self.mask.push(m as u8);
        }
        self.window.clear();
        self.masked.clear();
        Ok(())
    }
}
