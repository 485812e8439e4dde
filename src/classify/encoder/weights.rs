//! Reads the encoder's `model.safetensors` without loading the whole file.
//!
//! A safetensors file is an 8-byte little-endian header length, a JSON header naming each
//! tensor's dtype, shape and byte range, then the raw data. We parse the header ourselves
//! and read each tensor with positioned reads, so loading never holds more than one tensor's
//! bytes beyond what is kept.
//!
//! Why not mmap: candle copies every tensor it loads from a mapping into its own storage
//! anyway, so a mapping would only lower the load-time peak, and it would cost the crate's
//! `forbid(unsafe_code)`. What mmap would really buy, not keeping the 30522 x 384
//! word-embedding table in memory (45 MiB as f32), `WordRows` gets with positioned reads of
//! just the rows a prompt uses (from the page cache: about a microsecond each).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use serde::Deserialize;

use super::bert::{Matrix, Source};
use super::EncoderError;

/// Larger headers are not a model we wrote: refuse rather than allocate.
const MAX_HEADER_BYTES: u64 = 1 << 20;

#[derive(Debug, Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

/// An open safetensors file and its parsed header.
pub struct SafeTensors {
    file: File,
    /// Where the data section starts (tensor offsets are relative to it).
    data_start: u64,
    entries: HashMap<String, Entry>,
    file_len: u64,
}

impl SafeTensors {
    pub fn open(path: &Path) -> Result<SafeTensors, EncoderError> {
        let file = File::open(path).map_err(|e| EncoderError::io(path, e))?;
        let file_len = file
            .metadata()
            .map_err(|e| EncoderError::io(path, e))?
            .len();
        let mut len = [0u8; 8];
        file.read_exact_at(&mut len, 0)
            .map_err(|e| EncoderError::io(path, e))?;
        let header_len = u64::from_le_bytes(len);
        if header_len > MAX_HEADER_BYTES || 8 + header_len > file_len {
            return Err(EncoderError::Format("safetensors header length".into()));
        }
        let mut header = vec![0u8; header_len as usize];
        file.read_exact_at(&mut header, 8)
            .map_err(|e| EncoderError::io(path, e))?;
        let mut raw: HashMap<String, serde_json::Value> = serde_json::from_slice(&header)
            .map_err(|e| EncoderError::Format(format!("safetensors header: {e}")))?;
        raw.remove("__metadata__");
        let mut entries = HashMap::with_capacity(raw.len());
        for (name, value) in raw {
            let entry: Entry = serde_json::from_value(value)
                .map_err(|e| EncoderError::Format(format!("tensor {name}: {e}")))?;
            entries.insert(name, entry);
        }
        Ok(SafeTensors {
            file,
            data_start: 8 + header_len,
            entries,
            file_len,
        })
    }

    /// The byte range and shape of an f32 tensor, checked against the file and `shape`.
    fn locate(&self, name: &str, shape: &[usize]) -> Result<(u64, usize), EncoderError> {
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| EncoderError::Format(format!("missing tensor {name}")))?;
        if entry.dtype != "F32" || entry.shape != shape {
            return Err(EncoderError::Format(format!(
                "tensor {name}: {} {:?}, expected F32 {shape:?}",
                entry.dtype, entry.shape
            )));
        }
        let [begin, end] = entry.data_offsets;
        let count: usize = shape.iter().product();
        let fits = end
            .checked_sub(begin)
            .is_some_and(|n| n == 4 * count as u64)
            && self.data_start + end <= self.file_len;
        if !fits {
            return Err(EncoderError::Format(format!("tensor {name}: byte range")));
        }
        Ok((self.data_start + begin, count))
    }

    /// Reads a whole f32 tensor of the given shape.
    pub fn f32s(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, EncoderError> {
        let (at, count) = self.locate(name, shape)?;
        let mut bytes = vec![0u8; 4 * count];
        self.file
            .read_exact_at(&mut bytes, at)
            .map_err(|e| EncoderError::Format(format!("tensor {name}: {e}")))?;
        Ok(bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect())
    }

    /// A row-by-row reader of a `[rows, dims]` f32 table that stays on disk.
    pub fn rows(self, name: &str, rows: usize, dims: usize) -> Result<WordRows, EncoderError> {
        let (at, _) = self.locate(name, &[rows, dims])?;
        Ok(WordRows {
            file: self.file,
            at,
            rows,
            dims,
            q4: false,
        })
    }
}

impl Source for SafeTensors {
    fn f32s(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, EncoderError> {
        SafeTensors::f32s(self, name, shape)
    }

    fn matrix(&self, names: &[String], out: usize, inp: usize) -> Result<Matrix, EncoderError> {
        let mut w = Vec::with_capacity(names.len() * out * inp);
        for n in names {
            w.extend(SafeTensors::f32s(self, n, &[out, inp])?);
        }
        Matrix::f16(w, names.len() * out, inp)
    }
}

/// The word-embedding table, read a row at a time from the model file (f32, or ggml Q4_0
/// blocks dequantised on the way).
pub struct WordRows {
    file: File,
    at: u64,
    rows: usize,
    dims: usize,
    q4: bool,
}

impl WordRows {
    /// Q4_0 rows of `dims` weights (a multiple of 32) starting at byte `at` of `file`.
    pub fn q4(file: File, at: u64, rows: usize, dims: usize) -> WordRows {
        WordRows {
            file,
            at,
            rows,
            dims,
            q4: true,
        }
    }

    fn row_bytes(&self) -> usize {
        if self.q4 {
            self.dims / 32 * 18
        } else {
            4 * self.dims
        }
    }

    /// Appends row `id` to `out`. Ids come from the model's own vocabulary, so they are in
    /// range; an out-of-range id or a failed read (the file was truncated under us) is an
    /// error.
    pub fn push_row(&self, id: u32, out: &mut Vec<f32>) -> Result<(), EncoderError> {
        let id = id as usize;
        if id >= self.rows {
            return Err(EncoderError::Format(format!("token id {id} out of range")));
        }
        let mut bytes = [0u8; 4 * 1024];
        let row = &mut bytes[..self.row_bytes()];
        self.file
            .read_exact_at(row, self.at + (row.len() * id) as u64)
            .map_err(|e| EncoderError::Format(format!("word embedding row {id}: {e}")))?;
        if self.q4 {
            super::e5file::push_q4_row(row, out);
        } else {
            out.extend(
                row.chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))),
            );
        }
        Ok(())
    }
}
