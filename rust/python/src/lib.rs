//! PyO3 binding of longmagpie-core. Conversion only: Arrow in through the PyCapsule interface
//! (zero-copy), the GIL released around all work, Arrow out as pyarrow, errors as Python
//! exceptions. Panics never cross into Python: they become `RuntimeError`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use longmagpie_core::pmix::{BatchSource, PmixStream};
use longmagpie_core::{
    pack as core_pack, pack_from_plan as core_pack_from_plan, pack_plan as core_pack_plan,
    Exhausted, Fill, LossWeights, Overflow, PackError, PackOptions, PackStats, PmixOptions,
    PmixStats, Strategy,
};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3_arrow::input::AnyRecordBatch;
use pyo3_arrow::{PyArray, PyTable};

use arrow_array::{Array, ArrayRef, Int32Array, UInt32Array};
use longmagpie_core::assemble::{
    AssembleError, AssembleOptions, AssembleStats, Assembler as CoreAssembler, Budget,
    LongDocuments, SampleBatch, TemplateTexts,
};

/// A core error as the Python exception it stands for: a type error (a column of the wrong type)
/// is a `TypeError`, everything else a `ValueError`; the message names the row and the fix.
trait CoreError {
    fn into_py(self) -> PyErr;
}

impl CoreError for PackError {
    fn into_py(self) -> PyErr {
        if self.is_type_error() {
            PyTypeError::new_err(self.to_string())
        } else {
            PyValueError::new_err(self.to_string())
        }
    }
}

impl CoreError for AssembleError {
    fn into_py(self) -> PyErr {
        PyValueError::new_err(self.to_string())
    }
}

fn to_py_err(e: PackError) -> PyErr {
    e.into_py()
}

/// Runs `f` with the GIL released; a panic inside becomes a `RuntimeError`.
fn detached<T: Send, E: CoreError + Send>(
    py: Python<'_>,
    f: impl FnOnce() -> Result<T, E> + Send,
) -> PyResult<T> {
    let outcome = py.detach(|| catch_unwind(AssertUnwindSafe(f)));
    match outcome {
        Ok(result) => result.map_err(CoreError::into_py),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(PyRuntimeError::new_err(format!(
                "internal error in longmagpie's Rust core ({msg}); please report it with the input that caused it"
            )))
        }
    }
}

/// A stats struct as a dict of its fields, in the order listed. The struct is destructured without
/// `..`, so a field added to the core struct fails to compile here until it is listed: adding a
/// statistic is one edit in the binding, and no field can be forgotten.
macro_rules! stats_dict {
    ($py:expr, $stats:expr, $ty:ident { $($field:ident),* $(,)? }) => {{
        let $ty { $($field),* } = $stats;
        let d = PyDict::new($py);
        $(d.set_item(stringify!($field), $field)?;)*
        Ok::<_, PyErr>(d)
    }};
}

fn pack_stats_dict<'py>(py: Python<'py>, s: &PackStats) -> PyResult<Bound<'py, PyDict>> {
    stats_dict!(
        py,
        s,
        PackStats {
            input_samples,
            input_tokens,
            empty_samples,
            rows,
            documents,
            output_tokens,
            pad_tokens,
            document_pad_tokens,
            fill_rate,
            truncated_samples,
            truncated_tokens,
            dropped_samples,
            dropped_tokens,
            split_samples,
            split_pieces,
            max_documents_per_row,
            min_row_tokens,
        }
    )
}

/// The fields of `longmagpie.options.PackOptions`, read from the options object by attribute name:
/// the binding takes the checked options themselves, so no value can land in another's place.
#[derive(FromPyObject)]
struct PackArgs {
    seq_len: i64,
    strategy: String,
    overflow: String,
    num_threads: Option<i64>,
    pad_to: Option<i64>,
    pad_id: i64,
    loss_weights: Option<String>,
    pad_documents_to: Option<i64>,
}

fn loss_weights(name: Option<String>) -> PyResult<Option<LossWeights>> {
    name.map(|n| n.parse::<LossWeights>().map_err(to_py_err))
        .transpose()
}

impl PackArgs {
    fn core(self, row_offset: u64) -> PyResult<PackOptions> {
        let mut opts = PackOptions::new(positive_seq_len(self.seq_len)?);
        opts.strategy = self.strategy.parse::<Strategy>().map_err(to_py_err)?;
        opts.overflow = self.overflow.parse::<Overflow>().map_err(to_py_err)?;
        opts.num_threads = self
            .num_threads
            .map(|n| count("num_threads", n))
            .transpose()?;
        opts.pad_to = self.pad_to.map(|n| count("pad_to", n)).transpose()?;
        opts.row_offset = usize::try_from(row_offset)
            .map_err(|_| PyValueError::new_err(format!("row_offset {row_offset} is too large")))?;
        let pad_id = self.pad_id;
        opts.pad_id = i32::try_from(pad_id).map_err(|_| {
            PyValueError::new_err(format!("pad_id must fit in int32 (got {pad_id})"))
        })?;
        opts.loss_weights = loss_weights(self.loss_weights)?;
        opts.pad_documents_to = pad_documents(self.pad_documents_to)?;
        Ok(opts)
    }
}

fn pad_documents(multiple: Option<i64>) -> PyResult<Option<usize>> {
    multiple.map(|n| count("pad_documents_to", n)).transpose()
}

/// Packs tokenized samples into rows of at most `options.seq_len` tokens.
///
/// `options` is a `longmagpie.options.PackOptions`; `row_offset` numbers the first input row (in
/// error messages). Returns `(pyarrow.Table, stats: dict)`. See `longmagpie.pack` for the
/// documented API.
#[pyfunction]
#[pyo3(signature = (samples, options, row_offset=0))]
fn pack<'py>(
    py: Python<'py>,
    samples: AnyRecordBatch,
    options: PackArgs,
    row_offset: u64,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyDict>)> {
    let opts = options.core(row_offset)?;

    // Reading the stream may call back into Python (a generator-backed reader): keep the GIL here.
    let table = samples.into_table()?;
    let (batches, schema) = table.into_inner();
    let packed = detached(py, move || core_pack(&schema, &batches, &opts))?;
    let stats = pack_stats_dict(py, &packed.stats)?;
    let out = PyTable::try_new(packed.batches, packed.schema)?
        .into_pyobject(py)?
        .into_any();
    Ok((out, stats))
}

/// Plans `longmagpie.pack` from lengths alone: returns `(plan: pyarrow.Table, stats: dict)`.
///
/// `options` is a `longmagpie.options.PackOptions`. See `longmagpie.pack_plan`.
#[pyfunction]
fn pack_plan<'py>(
    py: Python<'py>,
    samples: AnyRecordBatch,
    options: PackArgs,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyDict>)> {
    let opts = options.core(0)?;
    let table = samples.into_table()?;
    let (batches, schema) = table.into_inner();
    let planned = detached(py, move || core_pack_plan(&schema, &batches, &opts))?;
    let stats = pack_stats_dict(py, &planned.stats)?;
    let out = PyTable::try_new(planned.batches, planned.schema)?
        .into_pyobject(py)?
        .into_any();
    Ok((out, stats))
}

/// Makes the rows of a plan from the samples it was made for: `(pyarrow.Table, stats: dict)`.
///
/// `expected_input` is the (samples, tokens) the plan recorded, checked before anything else. See
/// `longmagpie.pack_from_plan`.
#[pyfunction]
#[pyo3(signature = (samples, plan, options, expected_input=None))]
fn pack_from_plan<'py>(
    py: Python<'py>,
    samples: AnyRecordBatch,
    plan: AnyRecordBatch,
    options: PackArgs,
    expected_input: Option<(u64, u64)>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyDict>)> {
    let opts = options.core(0)?;
    let (batches, schema) = samples.into_table()?.into_inner();
    let (plan_batches, _) = plan.into_table()?.into_inner();
    let packed = detached(py, move || {
        core_pack_from_plan(&schema, &batches, &plan_batches, &opts, expected_input)
    })?;
    let stats = pack_stats_dict(py, &packed.stats)?;
    let out = PyTable::try_new(packed.batches, packed.schema)?
        .into_pyobject(py)?
        .into_any();
    Ok((out, stats))
}

fn pmix_stats_dict<'py>(py: Python<'py>, s: &PmixStats) -> PyResult<Bound<'py, PyDict>> {
    stats_dict!(
        py,
        s,
        PmixStats {
            rows,
            output_tokens,
            document_pad_tokens,
            fill_rate,
            long_samples,
            short_samples,
            long_input_tokens,
            short_input_tokens,
            long_used,
            short_used,
            long_unused,
            short_unused,
            reused_placements,
            long_segments,
            short_segments,
            prefix_segments,
            best_fit_segments,
            long_segment_share,
            long_tokens,
            short_tokens,
            long_token_share,
            empty_samples,
            truncated_samples,
            truncated_tokens,
            dropped_samples,
            dropped_tokens,
            max_documents_per_row,
        }
    )
}

fn count(name: &str, v: i64) -> PyResult<usize> {
    usize::try_from(v).map_err(|_| PyValueError::new_err(format!("{name} must be >= 0 (got {v})")))
}

fn positive_seq_len(seq_len: i64) -> PyResult<usize> {
    if seq_len <= 0 {
        return Err(PyValueError::new_err(format!(
            "seq_len must be a positive number of tokens (got {seq_len})"
        )));
    }
    count("seq_len", seq_len)
}

/// The fields of `longmagpie.options.PmixOptions`, read from the options object by attribute name.
#[derive(FromPyObject)]
struct PmixArgs {
    seq_len: i64,
    p_long: f64,
    n_short_prefix: i64,
    seed: u64,
    fill: String,
    overflow: String,
    exhausted: String,
    max_rows: Option<i64>,
    num_threads: Option<i64>,
    loss_weights: Option<String>,
    pad_documents_to: Option<i64>,
}

impl PmixArgs {
    fn core(self, window_tokens: Option<i64>) -> PyResult<PmixOptions> {
        let mut opts = PmixOptions::new(positive_seq_len(self.seq_len)?);
        opts.p_long = self.p_long;
        opts.n_short_prefix = count("n_short_prefix", self.n_short_prefix)?;
        opts.seed = self.seed;
        opts.fill = self.fill.parse::<Fill>().map_err(to_py_err)?;
        opts.overflow = self.overflow.parse::<Overflow>().map_err(to_py_err)?;
        opts.exhausted = self.exhausted.parse::<Exhausted>().map_err(to_py_err)?;
        opts.max_rows = self.max_rows.map(|n| count("max_rows", n)).transpose()?;
        opts.num_threads = self
            .num_threads
            .map(|n| count("num_threads", n))
            .transpose()?;
        opts.window_tokens = window_tokens
            .map(|n| count("window_tokens", n))
            .transpose()?;
        opts.loss_weights = loss_weights(self.loss_weights)?;
        opts.pad_documents_to = pad_documents(self.pad_documents_to)?;
        Ok(opts)
    }
}

/// A batch stream read from Python through the Arrow C stream interface (GIL not needed: a
/// Python-backed pyarrow reader takes the GIL itself).
fn source(input: AnyRecordBatch) -> PyResult<(arrow_schema::SchemaRef, BatchSource)> {
    let reader = input.into_reader()?;
    let schema = reader.schema();
    let batches = reader.map(|b| {
        b.map_err(|e| PackError::InvalidArgument(format!("reading the input stream: {e}")))
    });
    Ok((schema, Box::new(batches)))
}

/// p-mix over two Arrow streams, as an iterator of packed record batches (see
/// `longmagpie.pack_pmix_stream`). Each `next` runs with the GIL released.
#[pyclass(name = "PmixStream", module = "longmagpie._core")]
struct PyPmixStream {
    inner: Mutex<Option<PmixStream>>,
    schema: arrow_schema::SchemaRef,
}

#[pymethods]
impl PyPmixStream {
    /// The next packed batch as an Arrow C stream of one batch, or `None` at the end.
    fn next_batch<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let inner = &self.inner;
        let next = detached(py, move || {
            let mut guard = inner
                .lock()
                .map_err(|_| PackError::InvalidArgument("the stream failed earlier".into()))?;
            match guard.as_mut().and_then(|s| s.next()) {
                Some(Ok(b)) => Ok(Some(b)),
                Some(Err(e)) => {
                    *guard = None;
                    Err(e)
                }
                None => Ok(None),
            }
        })?;
        match next {
            Some(b) => {
                let t = PyTable::try_new(vec![b], self.schema.clone())?;
                Ok(Some(t.into_pyobject(py)?.into_any()))
            }
            None => Ok(None),
        }
    }

    /// An empty Arrow C stream with the output schema.
    fn empty<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let t = PyTable::try_new(vec![], self.schema.clone())?;
        Ok(t.into_pyobject(py)?.into_any())
    }

    /// Statistics so far (final once `next_batch` returned `None`).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let guard = self
            .inner
            .lock()
            .map_err(|_| PyRuntimeError::new_err("the stream failed earlier"))?;
        match guard.as_ref() {
            Some(s) => pmix_stats_dict(py, &s.stats()),
            None => Err(PyRuntimeError::new_err("the stream failed; no statistics")),
        }
    }
}

/// Starts a p-mix stream over two Arrow streams. `options` is a `longmagpie.options.PmixOptions`;
/// `window_tokens` is the block size per pool (`None`: each pool is one block, the in-memory call).
#[pyfunction]
#[pyo3(signature = (long, short, options, window_tokens=None))]
fn pack_pmix_stream(
    py: Python<'_>,
    long: AnyRecordBatch,
    short: AnyRecordBatch,
    options: PmixArgs,
    window_tokens: Option<i64>,
) -> PyResult<PyPmixStream> {
    let opts = options.core(window_tokens)?;
    let (long_schema, long) = source(long)?;
    let (short_schema, short) = source(short)?;
    let stream = detached(py, move || {
        PmixStream::new(&long_schema, long, &short_schema, short, &opts)
    })?;
    Ok(PyPmixStream {
        schema: stream.schema(),
        inner: Mutex::new(Some(stream)),
    })
}

/// The compiled core of longmagpie.
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(pack, m)?)?;
    m.add_function(wrap_pyfunction!(pack_plan, m)?)?;
    m.add_function(wrap_pyfunction!(pack_from_plan, m)?)?;
    m.add_function(wrap_pyfunction!(pack_pmix_stream, m)?)?;
    m.add_class::<PyPmixStream>()?;
    m.add_class::<Assembler>()?;
    m.add_class::<Tokenizer>()?;
    m.add_class::<NearDedup>()?;
    m.add_class::<NgramIndex>()?;
    m.add_function(wrap_pyfunction!(tokenize, m)?)?;
    m.add_function(wrap_pyfunction!(encode_segments, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

/// A Hugging Face tokenizer parsed once from its `tokenizer.json` text, for encoding without special
/// tokens, post-processing or truncation; `tokenize`, `encode_segments` and `Assembler` share it, so
/// a caller parses a 150k-token vocabulary once rather than on every call.
#[pyclass(module = "longmagpie._core", frozen)]
struct Tokenizer {
    inner: Arc<longmagpie_core::assemble::Tokenizer>,
}

#[pymethods]
impl Tokenizer {
    #[new]
    fn new(py: Python<'_>, tokenizer_json: String) -> PyResult<Self> {
        let tok = detached(py, move || {
            longmagpie_core::assemble::load_tokenizer(&tokenizer_json)
        })?;
        Ok(Tokenizer {
            inner: Arc::new(tok),
        })
    }

    /// Vocabulary size, added tokens included.
    fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}

/// Token ids of each text, list<int32> (see `longmagpie.tokenize`).
#[pyfunction]
#[pyo3(signature = (tokenizer, texts, num_threads=None))]
fn tokenize<'py>(
    py: Python<'py>,
    tokenizer: &Tokenizer,
    texts: PyArray,
    num_threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let (array, _) = texts.into_inner();
    let tok = tokenizer.inner.clone();
    let list = detached(py, move || {
        longmagpie_core::assemble::tokenize(&tok, &array, num_threads)
    })?;
    let field = Arc::new(arrow_schema::Field::new(
        "input_ids",
        list.data_type().clone(),
        true,
    ));
    let arr = PyArray::new(Arc::new(list), field);
    let obj: Py<PyAny> = arr.to_pyarrow(py)?.unbind();
    Ok(obj.into_bound(py))
}

/// Tokenizes rows of (text, masked) segments; see `longmagpie.encode_conversations`.
#[pyfunction]
#[pyo3(signature = (tokenizer, texts, masked, row_offsets, num_threads=None))]
fn encode_segments<'py>(
    py: Python<'py>,
    tokenizer: &Tokenizer,
    texts: PyArray,
    masked: PyArray,
    row_offsets: Vec<i32>,
    num_threads: Option<usize>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let (texts, _) = texts.into_inner();
    let masked = masked
        .array()
        .as_any()
        .downcast_ref::<arrow_array::BooleanArray>()
        .cloned()
        .ok_or_else(|| PyTypeError::new_err("masked must be a bool array"))?;
    let tok = tokenizer.inner.clone();
    let (ids, mask) = detached(py, move || {
        longmagpie_core::assemble::encode_segments(&tok, &texts, &masked, &row_offsets, num_threads)
    })?;
    let conv = |list: arrow_array::ListArray, name: &str| -> PyResult<Bound<'py, PyAny>> {
        let field = Arc::new(arrow_schema::Field::new(
            name,
            list.data_type().clone(),
            false,
        ));
        let arr = PyArray::new(Arc::new(list), field);
        let obj: Py<PyAny> = arr.to_pyarrow(py)?.unbind();
        Ok(obj.into_bound(py))
    };
    Ok((conv(ids, "input_ids")?, conv(mask, "assistant_masks")?))
}

fn assemble_stats_dict<'py>(py: Python<'py>, s: &AssembleStats) -> PyResult<Bound<'py, PyDict>> {
    stats_dict!(
        py,
        s,
        AssembleStats {
            samples,
            assembled,
            skipped_long,
            truncated_documents,
            truncated_tokens,
            distractors,
            output_tokens,
            masked_tokens,
            reused_tokens,
            windows,
            rebuilt,
            whole_text,
            min_tokens,
            max_tokens,
        }
    )
}

/// The keys of the `template` dict of `Assembler(...)`, the fields of `TemplateTexts`.
const TEMPLATE_KEYS: [&str; 8] = [
    "prefix",
    "user_to_answer",
    "answer_end",
    "suffix",
    "doc_separator",
    "query_separator",
    "trim_user",
    "trim_answer",
];

/// The chat-template texts from a dict keyed by `TEMPLATE_KEYS`: an unknown or missing key, or a value
/// of the wrong type, is a `TypeError` naming the key (a misspelt key is never taken for another).
fn template_texts(d: &Bound<'_, PyDict>) -> PyResult<TemplateTexts> {
    let expected = || TEMPLATE_KEYS.map(|k| format!("'{k}'")).join(", ");
    for key in d.keys() {
        let known = key
            .extract::<&str>()
            .is_ok_and(|k| TEMPLATE_KEYS.contains(&k));
        if !known {
            return Err(PyTypeError::new_err(format!(
                "template has an unknown key {}; expected the keys {}",
                key.repr()?,
                expected()
            )));
        }
    }
    let item = |key: &str| -> PyResult<Bound<'_, PyAny>> {
        d.get_item(key)?.ok_or_else(|| {
            PyTypeError::new_err(format!(
                "template is missing the key '{key}'; expected the keys {}",
                expected()
            ))
        })
    };
    let text = |key: &str| -> PyResult<String> {
        item(key)?
            .extract::<String>()
            .map_err(|_| PyTypeError::new_err(format!("template['{key}'] must be a str")))
    };
    let flag = |key: &str| -> PyResult<bool> {
        item(key)?
            .extract::<bool>()
            .map_err(|_| PyTypeError::new_err(format!("template['{key}'] must be a bool")))
    };
    Ok(TemplateTexts {
        prefix: text("prefix")?,
        user_to_answer: text("user_to_answer")?,
        answer_end: text("answer_end")?,
        suffix: text("suffix")?,
        doc_separator: text("doc_separator")?,
        query_separator: text("query_separator")?,
        trim_user: flag("trim_user")?,
        trim_answer: flag("trim_answer")?,
    })
}

fn int32_array(a: &ArrayRef, what: &str) -> PyResult<Int32Array> {
    a.as_any()
        .downcast_ref::<Int32Array>()
        .cloned()
        .ok_or_else(|| PyTypeError::new_err(format!("{what} must be an int32 array")))
}

/// Documents tokenized once with a Hugging Face tokenizer, and a chat template cut into spans;
/// assembles multi-document samples. See `longmagpie.assemble` for the documented API.
#[pyclass(module = "longmagpie._core", frozen)]
struct Assembler {
    inner: CoreAssembler,
}

#[pymethods]
impl Assembler {
    #[new]
    /// Keyword arguments only, and the template as a dict with named keys (`TEMPLATE_KEYS`), so that
    /// two swapped values of one type cannot be taken silently.
    #[pyo3(signature = (*, tokenizer, template, documents, distractors, max_tokens, budget, budget_min, budget_max, long_documents, seed, max_misses, margin, with_text, num_threads=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        tokenizer: &Tokenizer,
        template: &Bound<'_, PyDict>,
        documents: PyArray,
        distractors: Option<PyArray>,
        max_tokens: usize,
        budget: &str,
        budget_min: usize,
        budget_max: usize,
        long_documents: &str,
        seed: u64,
        max_misses: usize,
        margin: usize,
        with_text: bool,
        num_threads: Option<usize>,
    ) -> PyResult<Self> {
        let template = template_texts(template)?;
        let mut opts = AssembleOptions::new(max_tokens);
        opts.budget = match budget {
            "tokens" => Budget::Tokens {
                min: budget_min,
                max: budget_max,
            },
            "count" => Budget::Count {
                min: budget_min,
                max: budget_max,
            },
            other => {
                return Err(PyValueError::new_err(format!(
                    "budget must be 'tokens' or 'count', got {other:?}"
                )))
            }
        };
        opts.long_documents = match long_documents {
            "truncate" => LongDocuments::Truncate,
            "skip" => LongDocuments::Skip,
            other => {
                return Err(PyValueError::new_err(format!(
                    "long_documents must be 'truncate' or 'skip', got {other:?}"
                )))
            }
        };
        opts.seed = seed;
        opts.max_misses = max_misses;
        opts.margin = margin;
        opts.with_text = with_text;
        opts.num_threads = num_threads;
        let docs = documents.into_inner().0;
        let distractors = distractors.map(|d| d.into_inner().0);
        let tok = tokenizer.inner.clone();
        let inner = detached(py, move || {
            CoreAssembler::new(tok, template, docs, distractors, opts)
        })?;
        Ok(Assembler { inner })
    }

    /// Number of pool documents.
    fn documents(&self) -> usize {
        self.inner.documents()
    }

    /// Token count of each pool document, as a list.
    fn document_tokens(&self) -> Vec<u32> {
        self.inner.document_tokens()
    }

    /// Token ids of pool document `i`, tokenized alone.
    fn document_ids(&self, i: usize) -> PyResult<Vec<u32>> {
        if i >= self.inner.documents() {
            return Err(PyValueError::new_err(format!(
                "document {i} is out of range ({} documents)",
                self.inner.documents()
            )));
        }
        Ok(self.inner.document_ids(i).to_vec())
    }

    /// Assembles one batch of samples. Returns (pyarrow.Table, stats dict).
    #[pyo3(signature = (gold, queries, answers, gold_in_distractors=None, row_offset=0, reserve=None))]
    #[allow(clippy::too_many_arguments)] // Python keyword arguments, one per column
    fn assemble<'py>(
        &self,
        py: Python<'py>,
        gold: PyArray,
        queries: PyArray,
        answers: PyArray,
        gold_in_distractors: Option<PyArray>,
        row_offset: u64,
        reserve: Option<PyArray>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyDict>)> {
        let gold = int32_array(gold.array(), "gold")?;
        let excl = gold_in_distractors
            .map(|a| int32_array(a.array(), "gold_in_distractors"))
            .transpose()?;
        let reserve = reserve
            .map(|a| {
                a.array()
                    .as_any()
                    .downcast_ref::<UInt32Array>()
                    .cloned()
                    .ok_or_else(|| PyTypeError::new_err("reserve must be a uint32 array"))
            })
            .transpose()?;
        let (queries, answers) = (queries.into_inner().0, answers.into_inner().0);
        let inner = &self.inner;
        let (batches, stats) = detached(py, || {
            inner.assemble(&SampleBatch {
                gold: &gold,
                gold_in_distractors: excl.as_ref(),
                queries: &queries,
                answers: &answers,
                row_offset,
                reserve: reserve.as_ref(),
            })
        })?;
        let d = assemble_stats_dict(py, &stats)?;
        let schema = match batches.first() {
            Some(b) => b.schema(),
            None => inner.empty_schema(),
        };
        let out = PyTable::try_new(batches, schema)?
            .into_pyobject(py)?
            .into_any();
        Ok((out, d))
    }
}

/// A streaming near-duplicate filter (MinHash + LSH, verified by exact Jaccard); see
/// `longmagpie.quality.near_dedup`.
#[pyclass(module = "longmagpie._core")]
struct NearDedup {
    inner: Mutex<longmagpie_core::quality::NearDedup>,
}

#[pymethods]
impl NearDedup {
    #[new]
    #[pyo3(signature = (*, shingle, bands, rows, threshold, seed, num_threads=None))]
    fn new(
        shingle: usize,
        bands: usize,
        rows: usize,
        threshold: f64,
        seed: u64,
        num_threads: Option<usize>,
    ) -> PyResult<Self> {
        let opts = longmagpie_core::quality::NearDedupOptions {
            shingle,
            bands,
            rows,
            threshold,
            seed,
            num_threads,
        };
        let inner = longmagpie_core::quality::NearDedup::new(opts).map_err(CoreError::into_py)?;
        Ok(NearDedup {
            inner: Mutex::new(inner),
        })
    }

    /// Decides each text of `texts` after every row fed before; returns (`dup_of` int64 array, -1
    /// for a kept row; `similarity` float32 array; texts without words).
    fn add<'py>(
        &self,
        py: Python<'py>,
        texts: PyArray,
        column: &str,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>, usize)> {
        let (array, _) = texts.into_inner();
        let inner = &self.inner;
        let column = column.to_string();
        let out = detached(py, move || {
            let mut guard = inner
                .lock()
                .map_err(|_| AssembleError::InvalidArgument("the filter failed earlier".into()))?;
            guard.add(&array, &column)
        })?;
        let dup = arrow_array::Int64Array::from(out.dup_of);
        let sim = arrow_array::Float32Array::from(out.similarity);
        Ok((
            array_to_py(py, Arc::new(dup), "dup_of")?,
            array_to_py(py, Arc::new(sim), "similarity")?,
            out.empty,
        ))
    }

    /// Rows fed so far.
    fn rows(&self) -> PyResult<u64> {
        Ok(self.lock()?.rows())
    }

    /// Rows kept and indexed so far.
    fn indexed(&self) -> PyResult<u64> {
        Ok(self.lock()?.indexed())
    }

    /// Bytes the index holds.
    fn memory_bytes(&self) -> PyResult<u64> {
        Ok(self.lock()?.memory_bytes())
    }
}

impl NearDedup {
    fn lock(&self) -> PyResult<std::sync::MutexGuard<'_, longmagpie_core::quality::NearDedup>> {
        self.inner
            .lock()
            .map_err(|_| PyRuntimeError::new_err("the filter failed earlier"))
    }
}

/// An index of the word n-grams of evaluation texts; see `longmagpie.quality.decontaminate`.
#[pyclass(module = "longmagpie._core")]
struct NgramIndex {
    inner: Mutex<longmagpie_core::quality::NgramIndex>,
}

#[pymethods]
impl NgramIndex {
    #[new]
    #[pyo3(signature = (n, min_words, num_threads=None))]
    fn new(n: usize, min_words: usize, num_threads: Option<usize>) -> PyResult<Self> {
        let inner = longmagpie_core::quality::NgramIndex::new(n, min_words, num_threads)
            .map_err(CoreError::into_py)?;
        Ok(NgramIndex {
            inner: Mutex::new(inner),
        })
    }

    /// Adds the n-grams of `texts`, attributed to `source`; returns (texts that added grams, texts
    /// skipped as shorter than `min_words`).
    fn add(
        &self,
        py: Python<'_>,
        texts: PyArray,
        source: u32,
        column: &str,
    ) -> PyResult<(usize, usize)> {
        let (array, _) = texts.into_inner();
        let inner = &self.inner;
        let column = column.to_string();
        detached(py, move || {
            let mut guard = inner
                .lock()
                .map_err(|_| AssembleError::InvalidArgument("the index failed earlier".into()))?;
            guard.add(&array, source, &column)
        })
    }

    /// Distinct n-grams indexed.
    fn __len__(&self) -> PyResult<usize> {
        Ok(self
            .inner
            .lock()
            .map_err(|_| PyRuntimeError::new_err("the index failed earlier"))?
            .len())
    }

    /// For each text, the smallest source it shares an n-gram with, or -1 (an int32 array).
    fn first_match<'py>(
        &self,
        py: Python<'py>,
        texts: PyArray,
        column: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (array, _) = texts.into_inner();
        let inner = &self.inner;
        let column = column.to_string();
        let found = detached(py, move || {
            let guard = inner
                .lock()
                .map_err(|_| AssembleError::InvalidArgument("the index failed earlier".into()))?;
            guard.first_match(&array, &column)
        })?;
        array_to_py(py, Arc::new(Int32Array::from(found)), "source")
    }
}

fn array_to_py<'py>(py: Python<'py>, array: ArrayRef, name: &str) -> PyResult<Bound<'py, PyAny>> {
    let field = Arc::new(arrow_schema::Field::new(
        name,
        array.data_type().clone(),
        false,
    ));
    let obj: Py<PyAny> = PyArray::new(array, field).to_pyarrow(py)?.unbind();
    Ok(obj.into_bound(py))
}
