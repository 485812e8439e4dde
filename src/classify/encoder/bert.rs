//! The BERT encoder forward pass for one sequence, on candle's CPU tensors.
//!
//! Our own forward pass rather than candle-transformers' `BertModel`, for two reasons: it
//! checks a stop flag between layers, so a call whose caller stopped waiting (the time
//! budget ran out) frees its thread within one layer instead of finishing a 100 ms pass
//! nobody reads; and it spares every build the whole candle-transformers model zoo for
//! the hundred lines used here. One sequence, no padding: no attention mask is needed.
//!
//! Memory: a model given in f32 (MiniLM) has its layer matrices kept as f16 (11 M weights,
//! 21 MiB instead of 42) and multiplied in f16 with f32 accumulation; a model given in
//! ggml Q4_0 (e5-small) keeps them as they are and uses candle's quantized matmul. Layer
//! norms, softmax, GELU and the residual stream stay f32. Word embeddings are read per
//! token from the file (`weights::WordRows`), never held.

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::quantized::QMatMul;
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::LayerNorm;

use super::{Config, EncoderError};

/// Dtype the layer matrices are stored and multiplied in.
const WEIGHT_DTYPE: DType = DType::F16;

/// Where the forward pass reads its parameters (by their Hugging Face BERT names).
pub trait Source {
    fn f32s(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, EncoderError>;
    /// The `[out, in]` matrices of `names` stacked row-wise, ready to multiply.
    fn matrix(&self, names: &[String], out: usize, inp: usize) -> Result<Matrix, EncoderError>;
}

/// A layer matrix as a model file gives it.
pub enum Matrix {
    /// `[in, out]` f16 (from f32 weights): stored transposed so the product is `x · w`.
    F16(Tensor),
    /// ggml Q4_0 blocks, multiplied by candle's quantized kernels (activations to Q8_0).
    Q4(QMatMul),
}

impl Matrix {
    /// An f16 `[in, out]` matrix from f32 `[out, in]` weights, transposed and converted in
    /// one pass: going through f32 tensors (transpose, then convert) left two f32 copies of
    /// every matrix freed behind it, ~27 MB of the allocator's retained pages at idle.
    pub fn f16(w: Vec<f32>, out: usize, inp: usize) -> Result<Matrix, EncoderError> {
        if w.len() != out * inp {
            return Err(EncoderError::Format(format!(
                "matrix of {} weights, expected {out} x {inp}",
                w.len()
            )));
        }
        let mut t = vec![half::f16::ZERO; out * inp];
        for (o, row) in w.chunks_exact(inp).enumerate() {
            for (i, v) in row.iter().enumerate() {
                t[i * out + o] = half::f16::from_f32(*v);
            }
        }
        drop(w);
        debug_assert_eq!(WEIGHT_DTYPE, DType::F16);
        Ok(Matrix::F16(Tensor::from_vec(t, (inp, out), &Device::Cpu)?))
    }
}

struct Linear {
    matrix: Matrix,
    bias: Tensor,
}

impl Linear {
    /// Several linears over the same input as one (`[q; k; v]`): one product instead of three.
    fn load(
        src: &dyn Source,
        prefixes: &[String],
        out_dim: usize,
        in_dim: usize,
    ) -> Result<Linear, EncoderError> {
        let weights: Vec<String> = prefixes.iter().map(|p| format!("{p}.weight")).collect();
        let mut b = Vec::new();
        for p in prefixes {
            b.extend(src.f32s(&format!("{p}.bias"), &[out_dim])?);
        }
        Ok(Linear {
            matrix: src.matrix(&weights, out_dim, in_dim)?,
            bias: Tensor::from_vec(b, prefixes.len() * out_dim, &Device::Cpu)?,
        })
    }

    fn one(
        src: &dyn Source,
        prefix: String,
        out: usize,
        inp: usize,
    ) -> Result<Linear, EncoderError> {
        Linear::load(src, &[prefix], out, inp)
    }

    /// `x · w + b` for `x: [n, in]` (f32 in, f32 out).
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let product = match &self.matrix {
            Matrix::F16(w) => x.to_dtype(WEIGHT_DTYPE)?.matmul(w)?.to_dtype(DType::F32)?,
            Matrix::Q4(q) => q.forward(x)?,
        };
        product.broadcast_add(&self.bias)
    }
}

fn layer_norm(
    st: &dyn Source,
    prefix: &str,
    dim: usize,
    eps: f64,
) -> Result<LayerNorm, EncoderError> {
    let w = st.f32s(&format!("{prefix}.weight"), &[dim])?;
    let b = st.f32s(&format!("{prefix}.bias"), &[dim])?;
    Ok(LayerNorm::new(
        Tensor::from_vec(w, dim, &Device::Cpu)?,
        Tensor::from_vec(b, dim, &Device::Cpu)?,
        eps,
    ))
}

struct Layer {
    qkv: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

pub struct Bert {
    config: Config,
    /// Position embeddings plus the token-type-0 embedding, `[max_positions, hidden]`.
    positions: Tensor,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
}

/// The caller stopped waiting; the pass was abandoned between layers.
#[derive(Debug)]
pub struct Stopped;

impl Bert {
    pub fn load(st: &dyn Source, config: &Config) -> Result<Bert, EncoderError> {
        let (h, eps) = (config.hidden_size, config.layer_norm_eps);
        let positions = st.f32s(
            "embeddings.position_embeddings.weight",
            &[config.max_position_embeddings, h],
        )?;
        let token_types = st.f32s(
            "embeddings.token_type_embeddings.weight",
            &[config.type_vocab_size, h],
        )?;
        // Every position of a single-segment input adds token type 0: fold it in once.
        let positions: Vec<f32> = positions
            .chunks_exact(h)
            .flat_map(|row| row.iter().zip(&token_types[..h]).map(|(p, t)| p + t))
            .collect();
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            let qkv = ["query", "key", "value"].map(|m| format!("{p}.attention.self.{m}"));
            layers.push(Layer {
                qkv: Linear::load(st, &qkv, h, h)?,
                attention_out: Linear::one(st, format!("{p}.attention.output.dense"), h, h)?,
                attention_norm: layer_norm(st, &format!("{p}.attention.output.LayerNorm"), h, eps)?,
                intermediate: Linear::one(
                    st,
                    format!("{p}.intermediate.dense"),
                    config.intermediate_size,
                    h,
                )?,
                output: Linear::one(st, format!("{p}.output.dense"), h, config.intermediate_size)?,
                output_norm: layer_norm(st, &format!("{p}.output.LayerNorm"), h, eps)?,
            });
        }
        Ok(Bert {
            config: config.clone(),
            positions: Tensor::from_vec(
                positions,
                (config.max_position_embeddings, h),
                &Device::Cpu,
            )?,
            embedding_norm: layer_norm(st, "embeddings.LayerNorm", h, eps)?,
            layers,
        })
    }

    /// Mean of the last layer's token states (every token attends and counts, [CLS] and
    /// [SEP] included, as sentence-transformers' mean pooling does for one unpadded input).
    /// `words` is `[n, hidden]` row-major, the word embeddings of the `n` input tokens.
    pub fn mean_pooled(
        &self,
        words: Vec<f32>,
        stop: &AtomicBool,
    ) -> Result<Result<Vec<f32>, Stopped>, EncoderError> {
        let h = self.config.hidden_size;
        let n = words.len() / h;
        let words = Tensor::from_vec(words, (n, h), &Device::Cpu)?;
        let mut x = self
            .embedding_norm
            .forward(&(words + self.positions.narrow(0, 0, n)?)?)?;
        for layer in &self.layers {
            if stop.load(Ordering::Relaxed) {
                return Ok(Err(Stopped));
            }
            x = self.layer(layer, &x, n)?;
        }
        Ok(Ok(x.mean(0)?.to_vec1::<f32>()?))
    }

    fn layer(&self, l: &Layer, x: &Tensor, n: usize) -> candle_core::Result<Tensor> {
        let heads = self.config.num_attention_heads;
        let head_dim = self.config.hidden_size / heads;
        // [n, 3h] -> [3, heads, n, head_dim]
        let qkv = l
            .qkv
            .forward(x)?
            .reshape((n, 3, heads, head_dim))?
            .permute((1, 2, 0, 3))?;
        let q = (qkv.get(0)? * (1.0 / (head_dim as f64).sqrt()))?.contiguous()?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let scores = q.matmul(&k.t()?)?;
        let weights = candle_nn::ops::softmax_last_dim(&scores)?;
        // [heads, n, head_dim] -> [n, h]
        let context = weights
            .matmul(&v)?
            .transpose(0, 1)?
            .reshape((n, self.config.hidden_size))?;
        let attended = l
            .attention_norm
            .forward(&(l.attention_out.forward(&context)? + x)?)?;
        let inner = l.intermediate.forward(&attended)?.gelu_erf()?;
        l.output_norm
            .forward(&(l.output.forward(&inner)? + attended)?)
    }

    pub fn max_positions(&self) -> usize {
        self.config.max_position_embeddings
    }

    pub fn hidden_size(&self) -> usize {
        self.config.hidden_size
    }
}

/// `v / |v|` (zeros stay zeros).
pub fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}
