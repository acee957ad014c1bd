//! What every packer checks and starts the same way: the row capacity and the thread pool.

use crate::error::{PackError, Result};

/// Checks `seq_len` (a positive int32) and `num_threads` (`None` or positive).
pub(crate) fn check_common(seq_len: usize, num_threads: Option<usize>) -> Result<()> {
    if seq_len == 0 || seq_len > i32::MAX as usize {
        return Err(PackError::InvalidArgument(format!(
            "seq_len must be in 1..={} (got {seq_len})",
            i32::MAX
        )));
    }
    if num_threads == Some(0) {
        return Err(PackError::InvalidArgument(
            "num_threads must be >= 1 (or None for all cores)".into(),
        ));
    }
    Ok(())
}

/// A dedicated pool of `num_threads` threads (all cores for `None`), so callers such as Ray
/// workers can bound the CPU a call uses.
pub(crate) fn thread_pool(num_threads: Option<usize>) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(num_threads.unwrap_or(0))
        .build()
        .map_err(|e| PackError::InvalidArgument(format!("cannot start threads: {e}")))
}

/// Per-token loss weights the packers can write beside the rows (`loss_weights` list<float32>).
///
/// A token is *trained* when its mask is 1 and its label is not -100, and it is not the first
/// token of its document (no token of the document predicts it; the collator ignores its label).
/// Untrained tokens and padding weigh 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossWeights {
    /// `1 / N` on each of a document's `N` trained tokens (LongAlign's sequence average): every
    /// document with a trained token weighs 1 in total, however long its answer.
    PerSequence,
    /// 1 on every trained token (the token mean, written out).
    PerToken,
}

impl std::str::FromStr for LossWeights {
    type Err = PackError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "per_sequence" => Ok(LossWeights::PerSequence),
            "per_token" => Ok(LossWeights::PerToken),
            other => Err(PackError::InvalidArgument(format!(
                "unknown loss_weights '{other}'; expected one of 'per_sequence', 'per_token'"
            ))),
        }
    }
}

/// Checks `pad_documents_to` against the row sizes: a positive multiple that divides `seq_len` (so
/// a padded document still fits a row) and `pad_to` when given (so the row stays a multiple too).
pub(crate) fn check_pad_documents(
    pad_documents_to: Option<usize>,
    seq_len: usize,
    pad_to: Option<usize>,
) -> Result<()> {
    let Some(m) = pad_documents_to else {
        return Ok(());
    };
    if m == 0 || m > u32::MAX as usize {
        return Err(PackError::InvalidArgument(format!(
            "pad_documents_to must be >= 1 (got {m})"
        )));
    }
    for (name, n) in [("seq_len", Some(seq_len)), ("pad_to", pad_to)] {
        if let Some(n) = n {
            if n % m != 0 {
                return Err(PackError::InvalidArgument(format!(
                    "pad_documents_to={m} must divide {name}={n}, so that a padded document still fits and rows \
                     stay a multiple of it; pass a {name} that is a multiple of {m}"
                )));
            }
        }
    }
    Ok(())
}

/// Tokens a document of `len` tokens occupies in a row: `len` rounded up to a multiple of
/// `pad_documents_to` (its padding follows it, in its own segment of `seq_lengths`).
#[inline]
pub(crate) fn slot(len: u32, pad_documents_to: Option<u32>) -> u32 {
    match pad_documents_to {
        Some(m) if m > 1 => len.div_ceil(m) * m,
        _ => len,
    }
}
