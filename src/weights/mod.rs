//! Weight files: safetensors (our format, with metadata) and PyTorch `.pth` checkpoints
//! (read by a pickle interpreter that cannot run code). Keys are normalised so the
//! networks see `model.N...` whatever wrapper saved them.

pub mod pth;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::error::{escape_text, Error, Result};
use crate::nn::layout::{self, weight_key, Layout};
use crate::nn::{Generator, GeneratorConfig};

/// Where a set of weights came from; `info` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    Safetensors,
    Pth,
}

/// The tensors of one file (on the CPU, in their stored dtype) and its metadata.
#[derive(Debug, Clone)]
pub struct Weights {
    pub tensors: HashMap<String, Tensor>,
    pub metadata: BTreeMap<String, String>,
    pub format: SourceFormat,
}

/// Wrapper prefixes added by `DataParallel` and `torch.compile`.
const WRAPPER_PREFIXES: [&str; 2] = ["module.", "_orig_mod."];
/// Buffers of norm layers that have no place in an inference state dict.
const IGNORED_SUFFIXES: [&str; 3] = ["running_mean", "running_var", "num_batches_tracked"];

impl Weights {
    /// Reads a `.safetensors` or `.pth` file, told apart by content, not by extension. Only a
    /// regular file of at most [`crate::io::MAX_INPUT_FILE_BYTES`] is read; every error
    /// names the file.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = crate::io::read_input_file(path, crate::io::MAX_INPUT_FILE_BYTES)?;
        Self::from_bytes(&bytes).map_err(|e| e.with_path(path))
    }

    /// Parses weights from memory (the C ABI's `cg_model_load_from_memory`).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.is_empty() {
            return Err(Error::format_mem("the weights file is empty"));
        }
        let (tensors, metadata, format) = if pth::looks_like_pth(bytes)
            && !looks_like_safetensors(bytes)
        {
            let mut tensors = HashMap::new();
            for raw in pth::read_pth(bytes)? {
                let dtype = match raw.dtype {
                    pth::RawDtype::F16 => DType::F16,
                    pth::RawDtype::BF16 => DType::BF16,
                    pth::RawDtype::F32 => DType::F32,
                    pth::RawDtype::F64 => DType::F64,
                    pth::RawDtype::I64 => continue, // counters such as num_batches_tracked
                };
                let t = Tensor::from_raw_buffer(&raw.data, dtype, &raw.shape, &Device::Cpu)?;
                tensors.insert(raw.name, t);
            }
            (tensors, BTreeMap::new(), SourceFormat::Pth)
        } else {
            let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| {
                Error::format_mem(format!(
                    "not a safetensors or PyTorch .pth weights file ({e})"
                ))
            })?;
            let metadata = meta
                .metadata()
                .as_ref()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            let st = safetensors::SafeTensors::deserialize(bytes)
                .map_err(|e| Error::format_mem(format!("corrupt safetensors file: {e}")))?;
            let mut tensors = HashMap::new();
            for (name, view) in st.tensors() {
                use safetensors::Dtype as S;
                let dtype = match view.dtype() {
                    S::F16 => DType::F16,
                    S::BF16 => DType::BF16,
                    S::F32 => DType::F32,
                    S::F64 => DType::F64,
                    other => {
                        return Err(Error::format_mem(format!(
                            "tensor {} has dtype {other:?}; weights must be f16, bf16, f32 or f64",
                            escape_text(&name)
                        )))
                    }
                };
                let t = Tensor::from_raw_buffer(view.data(), dtype, view.shape(), &Device::Cpu)?;
                tensors.insert(name, t);
            }
            (tensors, metadata, SourceFormat::Safetensors)
        };
        let tensors = normalize_keys(tensors);
        if tensors.is_empty() {
            return Err(Error::format_mem("the file holds no tensors"));
        }
        Ok(Self {
            tensors,
            metadata,
            format,
        })
    }

    /// Prefixes under which a complete generator's head and first block are found
    /// (`""` for a bare state dict, `"G_A."` in a training checkpoint).
    pub fn generator_prefixes(&self) -> Vec<String> {
        let head = weight_key(&layout::layer(layout::HEAD));
        let mut out: Vec<String> = self
            .tensors
            .keys()
            .filter_map(|k| k.strip_suffix(head.as_str()))
            .filter(|p| {
                Layout::ALL.iter().any(|l| {
                    self.tensors
                        .contains_key(&format!("{p}{}", weight_key(&l.block_conv(0, 0))))
                })
            })
            .map(str::to_owned)
            .collect();
        out.sort();
        out
    }

    /// The single generator prefix, or an error saying why there is none or several.
    fn only_generator_prefix(&self) -> Result<String> {
        let prefixes = self.generator_prefixes();
        match prefixes.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(Error::format_mem(format!(
                "no CycleGAN ResNet generator found (expected keys such as {} and {} or {})",
                weight_key(&layout::layer(layout::HEAD)),
                weight_key(&Layout::Seed.block_conv(0, 0)),
                weight_key(&Layout::Official.block_conv(0, 0)),
            ))),
            many => Err(Error::format_mem(format!(
                "the file holds several generators ({}); keep one: export it from PyTorch on \
                 its own (e.g. `torch.save(ckpt[\"G_A\"], \"g.pth\")`) and import that file",
                many.iter()
                    .map(|p| match p.as_str() {
                        "" => "one at the top level".to_string(),
                        p => format!("one under {}", escape_text(p)),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Works out layout, filters and block count from key names and shapes.
    pub fn generator_config(&self) -> Result<GeneratorConfig> {
        let p = self.only_generator_prefix()?;
        self.config_at(&p)
    }

    fn config_at(&self, p: &str) -> Result<GeneratorConfig> {
        let has = |key: String| {
            self.tensors
                .contains_key(&format!("{p}{}", weight_key(&key)))
        };
        let layout = if has(Layout::Seed.block_conv(0, 0)) {
            Layout::Seed
        } else {
            Layout::Official
        };
        let blocks = (0..).take_while(|&i| has(layout.block_conv(i, 0))).count();
        let head_key = weight_key(&layout::layer(layout::HEAD));
        let head = &self.tensors[&format!("{p}{head_key}")];
        let dims = head.dims();
        if dims.len() != 4 || dims[1] != 3 || dims[2] != 7 || dims[3] != 7 || dims[0] == 0 {
            return Err(Error::format_mem(format!(
                "{}{head_key} has shape {dims:?}; a generator's first layer is [ngf, 3, 7, 7]",
                escape_text(p)
            )));
        }
        Ok(GeneratorConfig {
            layout,
            ngf: dims[0],
            blocks,
        })
    }

    /// Builds the generator on `device` in `dtype`, checking every shape.
    pub fn generator(&self, device: &Device, dtype: DType) -> Result<Generator> {
        self.generator_weights()?.build(device, dtype)
    }

    /// The single generator's tensors and shape, with finite values checked.
    pub fn generator_weights(&self) -> Result<GeneratorWeights> {
        let p = self.only_generator_prefix()?;
        let config = self.config_at(&p)?;
        self.check_finite(&p)?;
        Ok(GeneratorWeights {
            tensors: self.subset(&p),
            config,
        })
    }

    /// The tensors under `prefix`, with the prefix removed.
    pub fn subset(&self, prefix: &str) -> HashMap<String, Tensor> {
        self.tensors
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.to_owned(), v.clone())))
            .collect()
    }

    /// NaN or infinite weights turn every output pixel into garbage; refuse them up front.
    fn check_finite(&self, prefix: &str) -> Result<()> {
        for (k, t) in self.tensors.iter().filter(|(k, _)| k.starts_with(prefix)) {
            if !all_finite(t)? {
                return Err(Error::format_mem(format!(
                    "tensor {} holds NaN or infinite values; the file is corrupt or the \
                     training diverged, use another checkpoint",
                    escape_text(k)
                )));
            }
        }
        Ok(())
    }

    /// The stored dtype of the generator's weights, for `info`.
    pub fn dtype(&self) -> Option<DType> {
        self.tensors
            .get(&weight_key(&layout::layer(layout::HEAD)))
            .map(|t| t.dtype())
            .or_else(|| {
                let mut v: Vec<_> = self.tensors.iter().collect();
                v.sort_by(|a, b| a.0.cmp(b.0));
                v.first().map(|(_, t)| t.dtype())
            })
    }

    /// Number of scalar parameters in the file.
    pub fn parameter_count(&self) -> usize {
        self.tensors.values().map(|t| t.elem_count()).sum()
    }
}

/// A safetensors file opens with its header's length (u64, little-endian) and the JSON
/// header. The length's low byte is 0x80 for one file in 256, which is also how a pickle
/// starts, so the pickle test alone would send such a file to the `.pth` reader.
fn looks_like_safetensors(bytes: &[u8]) -> bool {
    let Some((len, rest)) = bytes.split_first_chunk::<8>() else {
        return false;
    };
    rest.first() == Some(&b'{') && u64::from_le_bytes(*len) <= rest.len() as u64
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

fn normalize_keys(tensors: HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    tensors
        .into_iter()
        .filter(|(k, _)| !IGNORED_SUFFIXES.iter().any(|s| k.ends_with(s)))
        .map(|(k, v)| {
            let mut key = k.as_str();
            while let Some(rest) = WRAPPER_PREFIXES.iter().find_map(|p| key.strip_prefix(p)) {
                key = rest;
            }
            // `torch.compile` and DataParallel can also wrap sub-modules.
            let key = key.replace("._orig_mod.", ".").replace(".module.", ".");
            (key, v)
        })
        .collect()
}

/// Serialises tensors with metadata to safetensors bytes, names sorted for stable files.
pub fn to_safetensors_bytes(
    tensors: &HashMap<String, Tensor>,
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let mut named: Vec<(&String, &Tensor)> = tensors.iter().collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    let contiguous: Vec<(String, Tensor)> = named
        .into_iter()
        .map(|(k, t)| Ok((k.clone(), t.to_device(&Device::Cpu)?.contiguous()?)))
        .collect::<Result<_>>()?;
    let meta: HashMap<String, String> = metadata.clone().into_iter().collect();
    safetensors::tensor::serialize(contiguous, Some(meta))
        .map_err(|e| Error::format_mem(format!("cannot serialise weights: {e}")))
}

/// Writes a style file: the generator's tensors in `dtype` plus metadata describing it.
pub fn save_style(
    path: &Path,
    tensors: &HashMap<String, Tensor>,
    dtype: DType,
    mut metadata: BTreeMap<String, String>,
    config: GeneratorConfig,
) -> Result<()> {
    metadata.insert("layout".into(), config.layout.name().into());
    metadata.insert("ngf".into(), config.ngf.to_string());
    metadata.insert("blocks".into(), config.blocks.to_string());
    metadata.insert("dtype".into(), format!("{dtype:?}").to_lowercase());
    let converted = tensors
        .iter()
        .map(|(k, t)| Ok((k.clone(), t.to_dtype(dtype)?)))
        .collect::<Result<HashMap<_, _>>>()?;
    let bytes = to_safetensors_bytes(&converted, &metadata)?;
    crate::io::write_atomic(path, &bytes)
}

/// Whether every value of `t` is finite. Reads f16 and f32 CPU tensors in place (this runs
/// on every model load); other tensors through a conversion.
fn all_finite(t: &Tensor) -> Result<bool> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    if let candle_core::Storage::Cpu(cpu) = &*storage {
        let span = layout.start_offset()..layout.start_offset() + t.elem_count();
        match t.dtype() {
            DType::F16 => {
                return Ok(cpu.as_slice::<half::f16>()?[span]
                    .iter()
                    .all(|v| v.is_finite()))
            }
            DType::BF16 => {
                return Ok(cpu.as_slice::<half::bf16>()?[span]
                    .iter()
                    .all(|v| v.is_finite()))
            }
            DType::F32 => return Ok(cpu.as_slice::<f32>()?[span].iter().all(|v| v.is_finite())),
            DType::F64 => return Ok(cpu.as_slice::<f64>()?[span].iter().all(|v| v.is_finite())),
            _ => {}
        }
    }
    drop(storage);
    // Element by element: a sum of absolute values overflows to infinity on large finite
    // weights (bf16 3e38) and would refuse a valid file.
    let values = t
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?;
    Ok(values.iter().all(|v| v.is_finite()))
}

/// One generator's weights as stored, ready to build on any device and in any dtype: what
/// a model keeps so that it builds a network only when something asks for it.
#[derive(Debug, Clone)]
pub struct GeneratorWeights {
    tensors: HashMap<String, Tensor>,
    config: GeneratorConfig,
}

impl GeneratorWeights {
    pub fn config(&self) -> GeneratorConfig {
        self.config
    }

    /// The dtype the tensors are stored in (F32 if they differ): building in it converts
    /// nothing.
    pub fn stored_dtype(&self) -> DType {
        let mut dtypes = self.tensors.values().map(Tensor::dtype);
        match dtypes.next() {
            Some(first) if dtypes.all(|d| d == first) => first,
            _ => DType::F32,
        }
    }

    /// These weights as a safetensors file (with the layout in its metadata): what a
    /// backend library loads.
    pub fn to_safetensors_bytes(&self) -> Result<Vec<u8>> {
        let c = self.config;
        let metadata = BTreeMap::from([
            ("layout".to_string(), c.layout.name().to_string()),
            ("ngf".to_string(), c.ngf.to_string()),
            ("blocks".to_string(), c.blocks.to_string()),
        ]);
        to_safetensors_bytes(&self.tensors, &metadata)
    }

    /// The network on `device` in `dtype`, checking every shape.
    pub fn build(&self, device: &Device, dtype: DType) -> Result<Generator> {
        let config = self.config;
        let vb = VarBuilder::from_tensors(self.tensors.clone(), dtype, device);
        Generator::new(&vb, config).map_err(|e| {
            Error::format_mem(format!(
                "weights do not fit a {} generator with {} filters and {} blocks: {}",
                config.layout.name(),
                config.ngf,
                config.blocks,
                escape_text(first_line(&e.to_string()))
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pads the metadata until the header length's low byte is 0x80 (a pickle's first
    /// byte): the file must still read as safetensors.
    #[test]
    fn safetensors_whose_length_starts_like_a_pickle() {
        let t = HashMap::from([(
            "model.1.weight".to_string(),
            Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap(),
        )]);
        let mut hit = false;
        for pad in 0..300 {
            let meta = BTreeMap::from([("pad".to_string(), "x".repeat(pad))]);
            let bytes = to_safetensors_bytes(&t, &meta).unwrap();
            if bytes[0] == 0x80 {
                hit = true;
                let w = Weights::from_bytes(&bytes).unwrap();
                assert_eq!(w.format, SourceFormat::Safetensors);
                assert_eq!(w.tensors["model.1.weight"].dims(), &[2, 3]);
            }
        }
        assert!(hit);
    }

    /// The check once summed absolute values, which overflows on large finite weights.
    #[test]
    fn large_finite_weights_are_not_called_infinite() {
        use half::bf16;
        let cpu = &Device::Cpu;
        let t = |v: Vec<bf16>| Tensor::from_vec(v, (2, 2), cpu).unwrap();
        assert!(all_finite(&t(vec![bf16::from_f32(3e38); 4])).unwrap());
        assert!(!all_finite(&t(vec![bf16::ONE, bf16::INFINITY, bf16::ONE, bf16::ONE])).unwrap());
        assert!(!all_finite(&t(vec![bf16::NAN; 4])).unwrap());
        let f64s = |v: Vec<f64>| Tensor::from_vec(v, 2, cpu).unwrap();
        assert!(all_finite(&f64s(vec![1e300, -1e300])).unwrap());
        assert!(!all_finite(&f64s(vec![f64::NAN, 0.0])).unwrap());
        // Strided views (through `contiguous`) and other dtypes go through the copy.
        let view = f64s(vec![1e300, 2.0]).narrow(0, 1, 1).unwrap();
        assert!(all_finite(&view).unwrap());
    }

    #[test]
    fn several_generators_are_listed_readably() {
        let z = || Tensor::zeros((1,), DType::F32, &Device::Cpu).unwrap();
        let mut tensors = HashMap::new();
        for p in ["", "G_A.", "G_B."] {
            tensors.insert(format!("{p}model.1.weight"), z());
            tensors.insert(format!("{p}model.10.block.1.weight"), z());
        }
        let w = Weights {
            tensors,
            metadata: BTreeMap::new(),
            format: SourceFormat::Pth,
        };
        let e = w.generator_config().unwrap_err().to_string();
        assert!(
            e.contains("(one at the top level, one under G_A., one under G_B.)"),
            "{e}"
        );
        assert!(!e.contains("<memory>"), "{e}");
    }
}
