//! Multi-document samples, token-aware: the gold document among distractors up to a token
//! budget, the chat template's fixed spans around them, a loss mask on the answer only.
//!
//! Documents are tokenized once (in parallel, [`tokenized`]) when the [`Assembler`] is built; every
//! sample then copies document tokens and re-tokenizes only small windows around the joins (see
//! [`joiner`]), which gives exactly the ids of tokenizing the rendered conversation.
//! Each sample draws from its own ChaCha8 stream keyed by (seed, global row index), so the output
//! does not depend on batching or thread count.

pub mod joiner;
pub mod tokenized;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use arrow_array::builder::{Int32Builder, StringBuilder};
use arrow_array::{ArrayRef, Int32Array, Int8Array, ListArray, RecordBatch, UInt32Array};
use arrow_buffer::{OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Schema};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use rayon::prelude::*;
pub use tokenizers::Tokenizer;

pub use crate::error::AssembleError;

use crate::columns::{str_column, texts_of};
use joiner::{Joiner, Specials};
use tokenized::{TokenizeFailure, Tokenized};

type Result<T> = std::result::Result<T, AssembleError>;

/// The chat template cut into the fixed texts around the variable parts (rendered in Python).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateTexts {
    /// Everything before the user content (system turn, user opener).
    pub prefix: String,
    /// Between the user content and the answer (end of user turn, assistant opener).
    pub user_to_answer: String,
    /// Right after the answer, in the loss mask (the assistant's end-of-turn token).
    pub answer_end: String,
    /// The rest, not in the loss mask.
    pub suffix: String,
    /// Between documents.
    pub doc_separator: String,
    /// Between the last document and the query.
    pub query_separator: String,
    /// The template strips whitespace around the user content (Jinja `| trim`).
    pub trim_user: bool,
    /// The template strips whitespace around the answer.
    pub trim_answer: bool,
}

/// How many distractors a sample gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Draw distractors until the sample reaches a target length drawn uniformly from
    /// `min..=max` tokens (capped at `max_tokens`).
    Tokens {
        /// Smallest target.
        min: usize,
        /// Largest target.
        max: usize,
    },
    /// A number of distractors drawn uniformly from `min..=max` (upstream: 0..=9).
    Count {
        /// Fewest distractors.
        min: usize,
        /// Most distractors.
        max: usize,
    },
}

/// What to do with a gold document that does not fit `max_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LongDocuments {
    /// Keep its first and last tokens, cut at pre-token boundaries, drop the middle (upstream).
    Truncate,
    /// Skip the sample (counted).
    Skip,
}

/// Options of [`Assembler`].
#[derive(Debug, Clone)]
pub struct AssembleOptions {
    /// Distractor budget.
    pub budget: Budget,
    /// Hard cap on a sample's tokens.
    pub max_tokens: usize,
    /// Gold documents over the cap.
    pub long_documents: LongDocuments,
    /// Seed of the per-sample streams.
    pub seed: u64,
    /// Consecutive failed draws (gold, duplicate, too long) after which a sample stops drawing.
    pub max_misses: usize,
    /// Pre-tokens re-tokenized on each side of a join.
    pub margin: usize,
    /// Also return the user content text of each sample.
    pub with_text: bool,
    /// Worker threads (`None`: one per core).
    pub num_threads: Option<usize>,
}

impl AssembleOptions {
    /// Defaults: 8k..64k-token targets, 64k cap, truncate, seed 0.
    pub fn new(max_tokens: usize) -> Self {
        AssembleOptions {
            budget: Budget::Tokens {
                min: max_tokens / 8,
                max: max_tokens,
            },
            max_tokens,
            long_documents: LongDocuments::Truncate,
            seed: 0,
            max_misses: 16,
            margin: 2,
            with_text: false,
            num_threads: None,
        }
    }

    fn check(&self) -> Result<()> {
        let bad = |m: String| Err(AssembleError::InvalidArgument(m));
        if self.max_tokens == 0 {
            return bad("max_tokens must be positive".into());
        }
        match self.budget {
            Budget::Tokens { min, max } if min > max || max == 0 => bad(format!(
                "target token range {min}..={max} is empty: give 0 < min <= max"
            )),
            Budget::Count { min, max } if min > max => bad(format!(
                "distractor count range {min}..={max} is empty: give min <= max"
            )),
            _ => Ok(()),
        }
    }
}

/// Counts of one assembly call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AssembleStats {
    /// Input samples.
    pub samples: u64,
    /// Samples written.
    pub assembled: u64,
    /// Samples skipped: gold document over the cap with `LongDocuments::Skip`, or the query,
    /// answer and template alone over the cap.
    pub skipped_long: u64,
    /// Gold documents truncated in the middle.
    pub truncated_documents: u64,
    /// Tokens cut from them.
    pub truncated_tokens: u64,
    /// Distractor documents placed.
    pub distractors: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Output tokens in the loss mask.
    pub masked_tokens: u64,
    /// Output tokens copied from pre-tokenized pieces.
    pub reused_tokens: u64,
    /// Windows re-tokenized around joins.
    pub windows: u64,
    /// Samples tokenized as one text because an added token's text spans a join.
    pub whole_text: u64,
    /// Samples whose length missed their token target by more than the last draw could fill.
    pub rebuilt: u64,
    /// Shortest and longest sample.
    pub min_tokens: u64,
    /// Longest sample.
    pub max_tokens: u64,
}

impl AssembleStats {
    fn merge(&mut self, o: &AssembleStats) {
        self.samples += o.samples;
        self.assembled += o.assembled;
        self.skipped_long += o.skipped_long;
        self.truncated_documents += o.truncated_documents;
        self.truncated_tokens += o.truncated_tokens;
        self.distractors += o.distractors;
        self.output_tokens += o.output_tokens;
        self.masked_tokens += o.masked_tokens;
        self.reused_tokens += o.reused_tokens;
        self.windows += o.windows;
        self.rebuilt += o.rebuilt;
        self.whole_text += o.whole_text;
        if o.assembled > 0 {
            self.min_tokens = if self.assembled == o.assembled {
                o.min_tokens
            } else {
                self.min_tokens.min(o.min_tokens)
            };
            self.max_tokens = self.max_tokens.max(o.max_tokens);
        }
    }
}

/// Python's `str.isspace` for one character (what Jinja's `trim` strips): Unicode White_Space
/// plus the four information separators U+001C..U+001F.
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// A set of texts (an Arrow string array) tokenized once.
struct TextSet {
    array: ArrayRef,
    tokens: Tokenized,
}

impl TextSet {
    fn new(tok: &Tokenizer, array: ArrayRef, column: &str) -> Result<Self> {
        let col = str_column(&array, column)?;
        let texts = texts_of(col, array.len(), column)?;
        for (row, t) in texts.iter().enumerate() {
            if t.chars().all(py_space) {
                return Err(AssembleError::EmptyDocument {
                    column: column.into(),
                    row,
                });
            }
        }
        let tokens = encode(tok, &texts, column)?;
        Ok(TextSet { array, tokens })
    }

    fn text(&self, i: usize) -> &str {
        str_column(&self.array, "")
            .ok()
            .and_then(|c| c.get(i))
            .unwrap_or("")
    }
}

fn encode(tok: &Tokenizer, texts: &[&str], column: &str) -> Result<Tokenized> {
    Tokenized::encode_all(tok, texts).map_err(|TokenizeFailure { index, message }| {
        AssembleError::Tokenize {
            column: column.into(),
            row: index,
            message,
        }
    })
}

/// Parses a `tokenizer.json` for encoding without special tokens, post-processing or truncation
/// (offsets must stay untrimmed and nothing may be added or cut). Parse once and share the result:
/// [`tokenize`], [`encode_segments`] and [`Assembler::new`] take it.
pub fn load_tokenizer(tokenizer_json: &str) -> Result<Tokenizer> {
    let mut tok: Tokenizer = tokenizer_json
        .parse()
        .map_err(|e: tokenizers::Error| AssembleError::Tokenizer(e.to_string()))?;
    tok.with_post_processor(None::<tokenizers::PostProcessorWrapper>);
    tok.with_padding(None);
    tok.with_truncation(None)
        .map_err(|e| AssembleError::Tokenizer(e.to_string()))?;
    Ok(tok)
}

/// Token ids of each text (no special tokens added) as a list<int32> array, tokenized in
/// parallel on a pool of `num_threads` (null texts stay null).
pub fn tokenize(
    tok: &Tokenizer,
    texts: &ArrayRef,
    num_threads: Option<usize>,
) -> Result<ListArray> {
    use arrow_array::Array;
    let col = str_column(texts, "text")?;
    let n = texts.len();
    let refs: Vec<&str> = (0..n).map(|i| col.get(i).unwrap_or("")).collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(num_threads.unwrap_or(0))
        .build()
        .map_err(|e| AssembleError::InvalidArgument(format!("cannot start threads: {e}")))?;
    let parts: Vec<std::result::Result<Vec<u32>, (usize, String)>> = pool.install(|| {
        refs.par_iter()
            .enumerate()
            .map(|(i, t)| {
                tok.encode_fast(*t, false)
                    .map(|e| e.get_ids().to_vec())
                    .map_err(|e| (i, e.to_string()))
            })
            .collect()
    });
    let mut values: Vec<i32> = Vec::new();
    let mut offsets = Vec::with_capacity(n + 1);
    offsets.push(0i32);
    for part in parts {
        let ids = part.map_err(|(row, message)| AssembleError::Tokenize {
            column: "text".into(),
            row,
            message,
        })?;
        values.extend(ids.iter().map(|&x| x as i32));
        let end = i32::try_from(values.len()).map_err(|_| {
            AssembleError::InvalidArgument(
                "over 2**31 tokens in one call: tokenize in smaller batches".into(),
            )
        })?;
        offsets.push(end);
    }
    let field = Arc::new(Field::new("item", DataType::Int32, false));
    Ok(ListArray::new(
        field,
        OffsetBuffer::new(ScalarBuffer::from(offsets)),
        Arc::new(Int32Array::from(values)),
        texts.nulls().cloned(),
    ))
}

/// Tokenizes rows of text segments, each row as one text, with a loss mask from the segments'
/// flags (a token is in the mask if it overlaps a masked segment). Row `r` is the segments
/// `row_offsets[r]..row_offsets[r + 1]`. Returns (`input_ids` list<int32>, `assistant_masks`
/// list<int8>).
pub fn encode_segments(
    tok: &Tokenizer,
    texts: &ArrayRef,
    masked: &arrow_array::BooleanArray,
    row_offsets: &[i32],
    num_threads: Option<usize>,
) -> Result<(ListArray, ListArray)> {
    use arrow_array::Array;
    let n_seg = texts.len();
    if masked.len() != n_seg {
        return Err(AssembleError::InvalidArgument(
            "texts and masked must have the same length".into(),
        ));
    }
    if row_offsets.first() != Some(&0)
        || row_offsets.last().map(|&x| x as usize) != Some(n_seg)
        || row_offsets.windows(2).any(|w| w[0] > w[1])
    {
        return Err(AssembleError::InvalidArgument(
            "row_offsets must rise from 0 to the number of segments".into(),
        ));
    }
    let segs = texts_of(str_column(texts, "text")?, n_seg, "segment")?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(num_threads.unwrap_or(0))
        .build()
        .map_err(|e| AssembleError::InvalidArgument(format!("cannot start threads: {e}")))?;
    let rows: Vec<Result<(Vec<u32>, Vec<u8>)>> = pool.install(|| {
        row_offsets
            .par_windows(2)
            .enumerate()
            .map(|(row, w)| {
                let mut j = Joiner::new(tok, 1);
                let range = w[0] as usize..w[1] as usize;
                for (s, text) in range.clone().zip(&segs[range]) {
                    j.text(text, masked.is_valid(s) && masked.value(s));
                }
                j.flush().map_err(|message| AssembleError::Tokenize {
                    column: "conversation".into(),
                    row,
                    message,
                })?;
                Ok((std::mem::take(&mut j.ids), std::mem::take(&mut j.mask)))
            })
            .collect()
    });
    let mut ids = Vec::new();
    let mut mask = Vec::new();
    let mut offsets = vec![0i32];
    for r in rows {
        let (i, m) = r?;
        ids.extend(i.iter().map(|&x| x as i32));
        mask.extend(m.iter().map(|&x| x as i8));
        offsets.push(i32::try_from(ids.len()).map_err(|_| {
            AssembleError::InvalidArgument(
                "over 2**31 tokens in one call: use smaller batches".into(),
            )
        })?);
    }
    let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
    let id_field = Arc::new(Field::new("item", DataType::Int32, false));
    let mask_field = Arc::new(Field::new("item", DataType::Int8, false));
    Ok((
        ListArray::new(
            id_field,
            offsets.clone(),
            Arc::new(Int32Array::from(ids)),
            None,
        ),
        ListArray::new(mask_field, offsets, Arc::new(Int8Array::from(mask)), None),
    ))
}

/// Indices of the template's literal texts in [`Literals`].
#[derive(Clone, Copy)]
enum Lit {
    Prefix = 0,
    UserToAnswer = 1,
    AnswerEnd = 2,
    Suffix = 3,
    DocSep = 4,
    QuerySep = 5,
}

struct Literals {
    texts: Vec<String>,
    tokens: Tokenized,
}

/// Where a piece's text lives.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Src {
    Lit,
    Doc,
    Distractor,
    Query,
    Answer,
}

#[derive(Clone, Copy, Debug)]
struct Piece {
    src: Src,
    t: usize,
    b0: usize,
    b1: usize,
    masked: bool,
}

/// One sample's token sequence and facts.
struct SampleOut {
    ids: Vec<u32>,
    mask: Vec<u8>,
    n_docs: i32,
    gold_position: i32,
    text: Option<String>,
}

/// A tokenizer, a template and a document pool, tokenized once; assembles batches of samples.
pub struct Assembler {
    tok: Arc<Tokenizer>,
    lits: Literals,
    docs: TextSet,
    distractors: Option<TextSet>,
    opts: AssembleOptions,
    pool: rayon::ThreadPool,
    trims: (bool, bool),
    specials: Option<Specials>,
}

/// One batch of samples: which pool document is gold, the query and the answer.
pub struct SampleBatch<'a> {
    /// Index into the pool per sample.
    pub gold: &'a Int32Array,
    /// Index into the distractor corpus of the gold document, to exclude (null: none).
    pub gold_in_distractors: Option<&'a Int32Array>,
    /// Queries.
    pub queries: &'a ArrayRef,
    /// Answers.
    pub answers: &'a ArrayRef,
    /// Global index of the first sample (keys the random streams).
    pub row_offset: u64,
    /// Tokens each sample must leave free after its answer (null or absent: none), e.g. the later turns
    /// of a multi-turn conversation appended to it afterwards: they count against `max_tokens` and the
    /// token target like the answer's own tokens.
    pub reserve: Option<&'a UInt32Array>,
}

impl Assembler {
    /// Tokenizes the template texts, the pool and the distractor corpus with `tok` (a tokenizer from
    /// [`load_tokenizer`], shared: the caller may go on using it).
    pub fn new(
        tok: Arc<Tokenizer>,
        template: TemplateTexts,
        docs: ArrayRef,
        distractors: Option<ArrayRef>,
        opts: AssembleOptions,
    ) -> Result<Self> {
        opts.check()?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(opts.num_threads.unwrap_or(0))
            .build()
            .map_err(|e| AssembleError::InvalidArgument(format!("cannot start threads: {e}")))?;
        let texts = vec![
            template.prefix.clone(),
            template.user_to_answer.clone(),
            template.answer_end.clone(),
            template.suffix.clone(),
            template.doc_separator.clone(),
            template.query_separator.clone(),
        ];
        let (lits, docs, distractors) = pool.install(|| -> Result<_> {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let lit_tokens = encode(&tok, &refs, "template")?;
            let docs = TextSet::new(&tok, docs, "documents")?;
            let distractors = distractors
                .map(|d| TextSet::new(&tok, d, "distractors"))
                .transpose()?;
            Ok((
                Literals {
                    texts,
                    tokens: lit_tokens,
                },
                docs,
                distractors,
            ))
        })?;
        let trims = (template.trim_user, template.trim_answer);
        let specials = Specials::new(&tok);
        let mut a = Assembler {
            specials,
            trims,
            tok,
            lits,
            docs,
            distractors,
            opts,
            pool,
        };
        a.opts.margin = a.opts.margin.max(1);
        Ok(a)
    }

    /// Number of pool documents.
    pub fn documents(&self) -> usize {
        self.docs.tokens.len()
    }

    /// Token count of each pool document.
    pub fn document_tokens(&self) -> Vec<u32> {
        (0..self.docs.tokens.len())
            .map(|t| self.docs.tokens.count(t) as u32)
            .collect()
    }

    /// Token ids of pool document `i` (as tokenized alone).
    pub fn document_ids(&self, i: usize) -> &[u32] {
        &self.docs.tokens.ids[self.docs.tokens.range(i)]
    }

    fn template(&self) -> TemplateTexts {
        let t = &self.lits.texts;
        TemplateTexts {
            prefix: t[0].clone(),
            user_to_answer: t[1].clone(),
            answer_end: t[2].clone(),
            suffix: t[3].clone(),
            doc_separator: t[4].clone(),
            query_separator: t[5].clone(),
            trim_user: self.trims.0,
            trim_answer: self.trims.1,
        }
    }

    /// Assembles a batch; returns record batches (`input_ids` list<int32>, `assistant_masks`
    /// list<int8>, `n_documents` int32, `gold_position` int32, `row` int32 (index of the sample
    /// in this batch), optional `user_content` string) and counts.
    pub fn assemble(&self, batch: &SampleBatch<'_>) -> Result<(Vec<RecordBatch>, AssembleStats)> {
        use arrow_array::Array;
        let n = batch.gold.len();
        if batch.queries.len() != n || batch.answers.len() != n {
            return Err(AssembleError::InvalidArgument(
                "gold, queries and answers must have the same length".into(),
            ));
        }
        let q = texts_of(str_column(batch.queries, "query")?, n, "query")?;
        let a = texts_of(str_column(batch.answers, "answer")?, n, "answer")?;
        let pool_len = self.docs.tokens.len();
        let mut gold = Vec::with_capacity(n);
        for row in 0..n {
            if batch.gold.is_null(row) {
                return Err(AssembleError::Null {
                    column: "gold document".into(),
                    row,
                });
            }
            let g = batch.gold.value(row);
            if g < 0 || g as usize >= pool_len {
                return Err(AssembleError::GoldOutOfRange {
                    row,
                    index: g as i64,
                    pool: pool_len,
                });
            }
            gold.push(g as usize);
        }
        let excl: Vec<Option<usize>> = (0..n)
            .map(|row| {
                batch
                    .gold_in_distractors
                    .filter(|e| e.is_valid(row) && e.value(row) >= 0)
                    .map(|e| e.value(row) as usize)
            })
            .collect();
        if let Some(r) = batch.reserve {
            if r.len() != n {
                return Err(AssembleError::InvalidArgument(format!(
                    "reserve has {} entries for {n} samples: give one per sample",
                    r.len()
                )));
            }
        }
        let reserve: Vec<usize> = (0..n)
            .map(|row| {
                batch
                    .reserve
                    .filter(|r| r.is_valid(row))
                    .map_or(0, |r| r.value(row) as usize)
            })
            .collect();
        let trims = self.trims;
        self.pool.install(|| {
            let qt = encode(&self.tok, &q, "query")?;
            let at = encode(&self.tok, &a, "answer")?;
            let ctx = Ctx {
                a: self,
                q: &q,
                qt: &qt,
                ans: &a,
                at: &at,
                reserve: &reserve,
                trims,
            };
            const CHUNK: usize = 32;
            let chunks: Vec<Result<(Vec<Option<SampleOut>>, AssembleStats)>> = (0..n)
                .collect::<Vec<_>>()
                .par_chunks(CHUNK)
                .map(|rows| {
                    let mut joiner = Joiner::new(&self.tok, self.opts.margin);
                    let mut stats = AssembleStats::default();
                    let mut outs = Vec::with_capacity(rows.len());
                    for &row in rows {
                        let global = batch.row_offset + row as u64;
                        outs.push(ctx.sample(
                            row,
                            global,
                            gold[row],
                            excl[row],
                            &mut joiner,
                            &mut stats,
                        )?);
                    }
                    stats.windows = joiner.windows;
                    Ok((outs, stats))
                })
                .collect();
            let mut stats = AssembleStats::default();
            let mut outs: Vec<(usize, SampleOut)> = Vec::new();
            let mut row = 0;
            for c in chunks {
                let (o, s) = c?;
                stats.merge(&s);
                for x in o {
                    if let Some(x) = x {
                        outs.push((row, x));
                    }
                    row += 1;
                }
            }
            Ok((self.to_batches(outs)?, stats))
        })
    }

    fn to_batches(&self, outs: Vec<(usize, SampleOut)>) -> Result<Vec<RecordBatch>> {
        let mut batches = Vec::new();
        let mut start = 0;
        while start < outs.len() {
            let mut end = start;
            let mut tokens = 0usize;
            while end < outs.len() && (end == start || tokens + outs[end].1.ids.len() < 1 << 30) {
                tokens += outs[end].1.ids.len();
                end += 1;
            }
            batches.push(self.batch(&outs[start..end])?);
            start = end;
        }
        Ok(batches)
    }

    fn batch(&self, outs: &[(usize, SampleOut)]) -> Result<RecordBatch> {
        let total: usize = outs.iter().map(|o| o.1.ids.len()).sum();
        let mut ids = Vec::with_capacity(total);
        let mut mask = Vec::with_capacity(total);
        let mut offsets = Vec::with_capacity(outs.len() + 1);
        offsets.push(0i32);
        let mut n_docs = Int32Builder::with_capacity(outs.len());
        let mut gold_pos = Int32Builder::with_capacity(outs.len());
        let mut rows = Int32Builder::with_capacity(outs.len());
        let mut text = self.opts.with_text.then(StringBuilder::new);
        for (row, o) in outs {
            ids.extend(o.ids.iter().map(|&x| x as i32));
            mask.extend(o.mask.iter().map(|&x| x as i8));
            offsets.push(ids.len() as i32);
            n_docs.append_value(o.n_docs);
            gold_pos.append_value(o.gold_position);
            rows.append_value(*row as i32);
            if let Some(t) = text.as_mut() {
                t.append_option(o.text.as_deref());
            }
        }
        let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
        let id_field = Arc::new(Field::new("item", DataType::Int32, false));
        let mask_field = Arc::new(Field::new("item", DataType::Int8, false));
        let mut fields = vec![
            Field::new("input_ids", DataType::List(id_field.clone()), false),
            Field::new("assistant_masks", DataType::List(mask_field.clone()), false),
            Field::new("n_documents", DataType::Int32, false),
            Field::new("gold_position", DataType::Int32, false),
            Field::new("row", DataType::Int32, false),
        ];
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(ListArray::new(
                id_field,
                offsets.clone(),
                Arc::new(Int32Array::from(ids)),
                None,
            )),
            Arc::new(ListArray::new(
                mask_field,
                offsets,
                Arc::new(Int8Array::from(mask)),
                None,
            )),
            Arc::new(n_docs.finish()),
            Arc::new(gold_pos.finish()),
            Arc::new(rows.finish()),
        ];
        if let Some(mut t) = text {
            fields.push(Field::new("user_content", DataType::Utf8, true));
            cols.push(Arc::new(t.finish()));
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
            .map_err(|e| AssembleError::InvalidArgument(format!("internal: {e}")))
    }

    /// The output schema (for an empty result).
    pub fn empty_schema(&self) -> arrow_schema::SchemaRef {
        self.batch(&[])
            .map_or_else(|_| Arc::new(Schema::empty()), |b| b.schema())
    }

    /// The template texts this assembler was built with.
    pub fn template_texts(&self) -> TemplateTexts {
        self.template()
    }
}

/// Everything one batch's samples share.
struct Ctx<'c> {
    a: &'c Assembler,
    q: &'c [&'c str],
    qt: &'c Tokenized,
    ans: &'c [&'c str],
    at: &'c Tokenized,
    reserve: &'c [usize],
    trims: (bool, bool),
}

fn draws(seed: u64, row: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&row.to_le_bytes());
    key[16..24].copy_from_slice(b"assemble");
    ChaCha8Rng::from_seed(key)
}

/// Uniform in `lo..=hi`.
fn uniform(rng: &mut ChaCha8Rng, lo: usize, hi: usize) -> usize {
    let span = (hi - lo) as u128 + 1;
    lo + ((rng.next_u64() as u128 * span) >> 64) as usize
}

impl Ctx<'_> {
    fn text(&self, src: Src, t: usize) -> &str {
        match src {
            Src::Lit => &self.a.lits.texts[t],
            Src::Doc => self.a.docs.text(t),
            Src::Distractor => self.a.distractors.as_ref().map_or("", |d| d.text(t)),
            Src::Query => self.q[t],
            Src::Answer => self.ans[t],
        }
    }

    fn set(&self, src: Src) -> &Tokenized {
        match src {
            Src::Lit => &self.a.lits.tokens,
            Src::Doc => &self.a.docs.tokens,
            Src::Distractor => self
                .a
                .distractors
                .as_ref()
                .map_or(&self.a.docs.tokens, |d| &d.tokens),
            Src::Query => self.qt,
            Src::Answer => self.at,
        }
    }

    fn whole(&self, src: Src, t: usize, masked: bool) -> Piece {
        Piece {
            src,
            t,
            b0: 0,
            b1: self.text(src, t).len(),
            masked,
        }
    }

    fn lit(&self, l: Lit) -> Piece {
        self.whole(Src::Lit, l as usize, false)
    }

    /// Strips Python whitespace from the start of the first non-empty piece and the end of the
    /// last one in `pieces` (what Jinja's `trim` does to the joined text).
    fn trim(&self, pieces: &mut Vec<Piece>) {
        for p in pieces.iter_mut() {
            let s = &self.text(p.src, p.t)[p.b0..p.b1];
            let kept = s.trim_start_matches(py_space);
            p.b0 += s.len() - kept.len();
            if p.b0 < p.b1 {
                break;
            }
        }
        for p in pieces.iter_mut().rev() {
            let s = &self.text(p.src, p.t)[p.b0..p.b1];
            let kept = s.trim_end_matches(py_space);
            p.b1 = p.b0 + kept.len();
            if p.b0 < p.b1 {
                break;
            }
        }
        pieces.retain(|p| p.b0 < p.b1);
    }

    /// The gold document as pieces for a user turn with `avail` tokens of room: whole, or its head and tail
    /// around a middle cut at word starts. `None`: too long and `long_documents = skip`.
    fn truncate_gold(&self, gold: usize, avail: usize) -> Option<Gold> {
        let docs = &self.a.docs;
        let gold_text = docs.text(gold);
        let gold_len = docs.tokens.count(gold);
        let whole = |b0: usize, b1: usize| Piece {
            src: Src::Doc,
            t: gold,
            b0,
            b1,
            masked: false,
        };
        if gold_len <= avail {
            return Some(Gold {
                pieces: vec![whole(0, gold_text.len())],
                tokens: gold_len,
                truncated: 0,
            });
        }
        if self.a.opts.long_documents == LongDocuments::Skip {
            return None;
        }
        let head = avail / 2;
        let tail = avail - head;
        let (hi, hb) = docs.tokens.word_start_at_or_before(gold, head);
        let (ti, tb) = docs
            .tokens
            .word_start_at_or_after(gold, gold_len - tail, gold_text.len());
        let hb = if hi == 0 { 0 } else { hb };
        Some(Gold {
            pieces: vec![whole(0, hb), whole(tb, gold_text.len())],
            tokens: hi + (gold_len - ti),
            truncated: (ti - hi) as u64,
        })
    }

    /// Draw the distractors (ids in `pool`, never `excluded`, never twice) until the budget drawn from `rng`
    /// is met, `max_misses` draws in a row do not fit, or the gold document was truncated (no room).
    /// Returns them with the gold document's slot among them (the next draw of `rng`).
    fn draw_distractors(&self, rng: &mut ChaCha8Rng, draw: Draw<'_>) -> (Vec<usize>, usize) {
        let opts = &self.a.opts;
        let Draw {
            pool,
            excluded,
            mut used,
            cap,
            slack,
            shrink,
            sep,
            truncated,
        } = draw;
        let mut chosen: Vec<usize> = Vec::new();
        let (target, want) = match opts.budget {
            Budget::Tokens { min, max } => (uniform(rng, min, max).min(cap), usize::MAX),
            Budget::Count { min, max } => (cap, uniform(rng, min, max)),
        };
        let target = target.min(cap - slack).saturating_sub(shrink);
        let n_pool = pool.len();
        let mut misses = 0;
        while !truncated && chosen.len() < want && misses < opts.max_misses && n_pool > 0 {
            let d = uniform(rng, 0, n_pool - 1);
            let cost = pool.count(d) + sep;
            if Some(d) == excluded || chosen.contains(&d) || used + cost > target {
                misses += 1;
                continue;
            }
            misses = 0;
            used += cost;
            chosen.push(d);
        }
        let gold_position = uniform(rng, 0, chosen.len());
        (chosen, gold_position)
    }

    /// Lay the sample out as pieces: the user turn's content (documents with the gold one at `gold_position`,
    /// the query; trimmed as the template trims), and the whole sample (prefix, content, answer, suffix).
    fn layout(
        &self,
        row: usize,
        gold: &[Piece],
        chosen: &[usize],
        gold_position: usize,
        distractor_src: Src,
    ) -> (Vec<Piece>, Vec<Piece>) {
        let mut content: Vec<Piece> = Vec::new();
        let mut k = 0;
        for slot in 0..=chosen.len() {
            if slot > 0 {
                content.push(self.lit(Lit::DocSep));
            }
            if slot == gold_position {
                content.extend(gold.iter().copied());
            } else {
                content.push(self.whole(distractor_src, chosen[k], false));
                k += 1;
            }
        }
        content.push(self.lit(Lit::QuerySep));
        content.push(self.whole(Src::Query, row, false));
        if self.trims.0 {
            self.trim(&mut content);
        }
        let mut answer = vec![self.whole(Src::Answer, row, true)];
        if self.trims.1 {
            self.trim(&mut answer);
        }
        let mut all: Vec<Piece> = Vec::with_capacity(content.len() + 5);
        all.push(self.lit(Lit::Prefix));
        all.extend(content.iter().copied());
        all.push(self.lit(Lit::UserToAnswer));
        all.extend(answer);
        let mut end = self.lit(Lit::AnswerEnd);
        end.masked = true;
        all.push(end);
        all.push(self.lit(Lit::Suffix));
        (content, all)
    }

    /// Tokenize `pieces` into `joiner`: piece by piece from the pre-tokenized texts, or as one text when a
    /// special token would form across a join.
    fn join(
        &self,
        row: usize,
        pieces: &[Piece],
        joiner: &mut Joiner<'_>,
        stats: &mut AssembleStats,
    ) -> Result<()> {
        let err = |message| AssembleError::Tokenize {
            column: "assembled sample".into(),
            row,
            message,
        };
        joiner.clear();
        let texts: Vec<&str> = pieces
            .iter()
            .map(|p| &self.text(p.src, p.t)[p.b0..p.b1])
            .collect();
        let whole = self.a.specials.as_ref().is_some_and(|s| s.crosses(&texts));
        if whole {
            stats.whole_text += 1;
        }
        for (p, text) in pieces.iter().zip(&texts) {
            if whole {
                joiner.text(text, p.masked);
                continue;
            }
            let full = self.text(p.src, p.t);
            joiner
                .piece(self.set(p.src), p.t, full, p.b0..p.b1, p.masked)
                .map_err(err)?;
        }
        joiner.flush().map_err(err)
    }

    /// Count an assembled sample of `out.ids.len()` tokens in `stats`.
    fn record(
        stats: &mut AssembleStats,
        out: &SampleOut,
        distractors: usize,
        truncated: u64,
        reused: u64,
    ) {
        stats.assembled += 1;
        stats.distractors += distractors as u64;
        if truncated > 0 {
            stats.truncated_documents += 1;
            stats.truncated_tokens += truncated;
        }
        let len = out.ids.len() as u64;
        stats.min_tokens = if stats.assembled == 1 {
            len
        } else {
            stats.min_tokens.min(len)
        };
        stats.max_tokens = stats.max_tokens.max(len);
        stats.output_tokens += len;
        stats.masked_tokens += out.mask.iter().map(|&m| m as u64).sum::<u64>();
        stats.reused_tokens += reused;
    }

    /// Assemble sample `row` (global index `global`, gold document `gold`, `excl` a distractor to leave out):
    /// truncate the gold document to fit, draw distractors, lay the pieces out and join them; when the joins
    /// add more tokens than the slack allows (rare), shrink the budget and redo (at most 8 attempts).
    fn sample(
        &self,
        row: usize,
        global: u64,
        gold: usize,
        excl: Option<usize>,
        joiner: &mut Joiner<'_>,
        stats: &mut AssembleStats,
    ) -> Result<Option<SampleOut>> {
        stats.samples += 1;
        let opts = &self.a.opts;
        let cap = opts.max_tokens;
        let lit = |l: Lit| self.a.lits.tokens.count(l as usize);
        let fixed = lit(Lit::Prefix)
            + lit(Lit::QuerySep)
            + lit(Lit::UserToAnswer)
            + lit(Lit::AnswerEnd)
            + lit(Lit::Suffix)
            + self.qt.count(row)
            + self.at.count(row)
            + self.reserve[row];
        // Slack for joins: each may shift the count by a token or two.
        let slack = 8;
        if fixed + slack >= cap {
            stats.skipped_long += 1;
            return Ok(None);
        }
        let mut shrink = 0usize;
        let distractor_src = if self.a.distractors.is_some() {
            Src::Distractor
        } else {
            Src::Doc
        };
        let excluded = match distractor_src {
            Src::Doc => Some(gold),
            _ => excl,
        };
        for attempt in 0..8 {
            let avail = (cap - fixed - slack).saturating_sub(shrink);
            let mut rng = draws(opts.seed, global);
            let windows_before = joiner.window_tokens;
            let Some(g) = self.truncate_gold(gold, avail) else {
                stats.skipped_long += 1;
                return Ok(None);
            };
            let draw = Draw {
                pool: self.set(distractor_src),
                excluded,
                used: fixed + g.tokens,
                cap,
                slack,
                shrink,
                sep: lit(Lit::DocSep),
                truncated: g.truncated > 0,
            };
            let (chosen, gold_position) = self.draw_distractors(&mut rng, draw);
            let (content, all) =
                self.layout(row, &g.pieces, &chosen, gold_position, distractor_src);
            self.join(row, &all, joiner, stats)?;
            let total = joiner.ids.len() + self.reserve[row];
            if total > cap {
                // Joins added more tokens than the slack allows (rare): shrink and redo.
                stats.rebuilt += 1;
                shrink += total - cap + slack * (attempt + 1);
                continue;
            }
            let out = SampleOut {
                ids: joiner.ids.clone(),
                mask: joiner.mask.clone(),
                n_docs: (chosen.len() + 1) as i32,
                gold_position: gold_position as i32,
                text: opts.with_text.then(|| {
                    content
                        .iter()
                        .map(|p| &self.text(p.src, p.t)[p.b0..p.b1])
                        .collect()
                }),
            };
            let reused = out.ids.len() as u64 - (joiner.window_tokens - windows_before);
            Self::record(stats, &out, chosen.len(), g.truncated, reused);
            return Ok(Some(out));
        }
        stats.skipped_long += 1;
        Ok(None)
    }
}

/// The gold document laid out for one attempt: its pieces, their tokens, the tokens cut from its middle.
struct Gold {
    pieces: Vec<Piece>,
    tokens: usize,
    truncated: u64,
}

/// What a distractor draw needs: the pool, the document to leave out, the tokens used so far and the limits.
struct Draw<'p> {
    pool: &'p Tokenized,
    excluded: Option<usize>,
    used: usize,
    cap: usize,
    slack: usize,
    shrink: usize,
    sep: usize,
    truncated: bool,
}
