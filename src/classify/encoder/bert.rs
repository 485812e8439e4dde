//! The BERT encoder forward pass for one sequence, on candle's CPU tensors.
//!
//! Our own forward pass rather than candle-transformers' `BertModel`, for two reasons: it
//! checks a stop flag between layers, so a call whose caller stopped waiting (the time
//! budget ran out) frees its thread within one layer instead of finishing a 100 ms pass
//! nobody reads; and it spares every build the whole candle-transformers model zoo for
//! the hundred lines used here. One sequence, no padding: no attention mask is needed.
//!
//! Memory: the encoder layers' matrices are kept as f16 (11 M weights, 21 MiB instead of
//! 42) and multiplied in f16 with f32 accumulation; layer norms, softmax, GELU and the
//! residual stream stay f32. Embeddings come from `weights::WordRows`, off the heap.

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::LayerNorm;

use super::weights::SafeTensors;
use super::{Config, EncoderError};

/// Dtype the layer matrices are stored and multiplied in.
const WEIGHT_DTYPE: DType = DType::F16;

struct Linear {
    /// `[in, out]`: stored transposed so the product is a plain `x · w`.
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    fn load(
        st: &SafeTensors,
        prefix: &str,
        out_dim: usize,
        in_dim: usize,
    ) -> Result<Linear, EncoderError> {
        let w = st.f32s(&format!("{prefix}.weight"), &[out_dim, in_dim])?;
        let b = st.f32s(&format!("{prefix}.bias"), &[out_dim])?;
        Linear::from_parts(w, b, out_dim, in_dim)
    }

    /// Several linears over the same input as one (`[q; k; v]`): one product instead of three.
    fn load_fused(
        st: &SafeTensors,
        prefixes: &[String],
        out_dim: usize,
        in_dim: usize,
    ) -> Result<Linear, EncoderError> {
        let (mut w, mut b) = (Vec::new(), Vec::new());
        for p in prefixes {
            w.extend(st.f32s(&format!("{p}.weight"), &[out_dim, in_dim])?);
            b.extend(st.f32s(&format!("{p}.bias"), &[out_dim])?);
        }
        Linear::from_parts(w, b, prefixes.len() * out_dim, in_dim)
    }

    fn from_parts(
        w: Vec<f32>,
        b: Vec<f32>,
        out_dim: usize,
        in_dim: usize,
    ) -> Result<Linear, EncoderError> {
        let weight = Tensor::from_vec(w, (out_dim, in_dim), &Device::Cpu)?
            .t()?
            .contiguous()?
            .to_dtype(WEIGHT_DTYPE)?;
        let bias = Tensor::from_vec(b, out_dim, &Device::Cpu)?;
        Ok(Linear { weight, bias })
    }

    /// `x · w + b` for `x: [n, in]` (f32 in, f32 out).
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.to_dtype(WEIGHT_DTYPE)?
            .matmul(&self.weight)?
            .to_dtype(DType::F32)?
            .broadcast_add(&self.bias)
    }
}

fn layer_norm(
    st: &SafeTensors,
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
    pub fn load(st: &SafeTensors, config: &Config) -> Result<Bert, EncoderError> {
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
                qkv: Linear::load_fused(st, &qkv, h, h)?,
                attention_out: Linear::load(st, &format!("{p}.attention.output.dense"), h, h)?,
                attention_norm: layer_norm(st, &format!("{p}.attention.output.LayerNorm"), h, eps)?,
                intermediate: Linear::load(
                    st,
                    &format!("{p}.intermediate.dense"),
                    config.intermediate_size,
                    h,
                )?,
                output: Linear::load(
                    st,
                    &format!("{p}.output.dense"),
                    h,
                    config.intermediate_size,
                )?,
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
