//! Everything that changes while training (four networks, three optimisers, two pools)
//! and the seed's training step over it. Kept apart from data loading so that the
//! parity test can drive exactly the PyTorch fixture's batches through it.

use std::collections::{BTreeMap, HashMap};

use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

use super::adam::{Adam, AdamParams};
use super::history::ImagePool;
use super::losses::{l1, mse_to, scalar, StepLosses};
use super::rng::{Rng, Stream};
use crate::error::{Error, Result};
use crate::nn::{Discriminator, Generator, GeneratorConfig};

/// Loss weights, optimiser and pool settings of the step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepSettings {
    pub lambda_cycle: f64,
    /// Absolute weight of the identity loss (the seed's `lambda_id`, 0.5 x `lambda_cycle`).
    pub lambda_identity: f64,
    pub adam: AdamParams,
    pub pool_size: usize,
}

impl Default for StepSettings {
    fn default() -> Self {
        Self {
            lambda_cycle: 10.0,
            lambda_identity: 5.0,
            adam: AdamParams::default(),
            pool_size: 50,
        }
    }
}

/// The four networks' names: prefixes in checkpoints and in [`TrainState::network_tensors`].
pub const NETWORKS: [&str; 4] = ["g_ab", "g_ba", "d_a", "d_b"];

/// A network's variables by state-dict key, sorted so that iteration order (and with it
/// random initialisation) never depends on a hash map.
type NamedVars = Vec<(String, Var)>;

fn build<T>(
    device: &Device,
    dtype: DType,
    f: impl FnOnce(&VarBuilder) -> candle_core::Result<T>,
) -> Result<(T, NamedVars)> {
    let map = VarMap::new();
    let vb = VarBuilder::from_varmap(&map, dtype, device);
    let net = f(&vb)?;
    let data = map.data().lock().unwrap_or_else(|e| e.into_inner());
    let mut vars: NamedVars = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((net, vars))
}

/// Networks, optimisers and pools of one CycleGAN. Domain A is the content (photos),
/// domain B the style (paintings): `g_ab` is the stylizer, `g_ba` its inverse, `d_a`
/// judges content images and `d_b` style images.
pub struct TrainState {
    pub g_ab: Generator,
    pub g_ba: Generator,
    pub d_a: Discriminator,
    pub d_b: Discriminator,
    /// Variables of `NETWORKS`, in that order.
    vars: [NamedVars; 4],
    opt_g: Adam,
    opt_d_a: Adam,
    opt_d_b: Adam,
    /// Past fakes of domain A (for `d_a`) and of domain B (for `d_b`).
    pool_a: ImagePool,
    pool_b: ImagePool,
    settings: StepSettings,
    generator: GeneratorConfig,
    ndf: usize,
    device: Device,
    dtype: DType,
}

impl TrainState {
    /// Builds the networks with the seed's initialisation (N(0, 0.02) weights, zero
    /// biases) drawn from our own generator, so that a seed fixes the starting point.
    pub fn new(
        generator: GeneratorConfig,
        ndf: usize,
        settings: StepSettings,
        device: &Device,
        dtype: DType,
        seed: u64,
    ) -> Result<Self> {
        let (g_ab, v0) = build(device, dtype, |vb| Generator::new(vb, generator))?;
        let (g_ba, v1) = build(device, dtype, |vb| Generator::new(vb, generator))?;
        let (d_a, v2) = build(device, dtype, |vb| Discriminator::new(vb, ndf))?;
        let (d_b, v3) = build(device, dtype, |vb| Discriminator::new(vb, ndf))?;
        let named = |prefix: &str, v: &NamedVars| -> NamedVars {
            v.iter()
                .map(|(k, v)| (format!("{prefix}.{k}"), v.clone()))
                .collect()
        };
        let mut g_vars = named("g_ab", &v0);
        g_vars.extend(named("g_ba", &v1));
        let opt_g = Adam::new(g_vars, settings.adam)?;
        let opt_d_a = Adam::new(v2.clone(), settings.adam)?;
        let opt_d_b = Adam::new(v3.clone(), settings.adam)?;
        let state = Self {
            g_ab,
            g_ba,
            d_a,
            d_b,
            vars: [v0, v1, v2, v3],
            opt_g,
            opt_d_a,
            opt_d_b,
            pool_a: ImagePool::new(settings.pool_size),
            pool_b: ImagePool::new(settings.pool_size),
            settings,
            generator,
            ndf,
            device: device.clone(),
            dtype,
        };
        state.randomize(seed)?;
        Ok(state)
    }

    fn randomize(&self, seed: u64) -> Result<()> {
        for (i, vars) in self.vars.iter().enumerate() {
            let mut rng = Rng::derive(seed, Stream::Init, i as u64);
            for (name, var) in vars {
                let n = var.elem_count();
                let values: Vec<f64> = if name.ends_with(".weight") {
                    (0..n).map(|_| 0.02 * rng.normal()).collect()
                } else {
                    vec![0.0; n]
                };
                let t = Tensor::from_vec(values, var.shape(), &Device::Cpu)?
                    .to_dtype(self.dtype)?
                    .to_device(&self.device)?;
                var.set(&t)?;
            }
        }
        Ok(())
    }

    pub fn generator_config(&self) -> GeneratorConfig {
        self.generator
    }

    pub fn ndf(&self) -> usize {
        self.ndf
    }

    pub fn settings(&self) -> StepSettings {
        self.settings
    }

    /// Changes loss weights (not the pool size, which the pools' contents depend on).
    pub fn set_loss_weights(&mut self, lambda_cycle: f64, lambda_identity: f64) {
        self.settings.lambda_cycle = lambda_cycle;
        self.settings.lambda_identity = lambda_identity;
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Overwrites network `net` (one of [`NETWORKS`]) with `tensors[prefix + key]`;
    /// every key must be present with the right shape.
    pub fn load_network(
        &self,
        net: &str,
        tensors: &HashMap<String, Tensor>,
        prefix: &str,
    ) -> Result<()> {
        let i = NETWORKS
            .iter()
            .position(|n| *n == net)
            .ok_or_else(|| Error::InvalidArgument(format!("no network named {net:?}")))?;
        for (name, var) in &self.vars[i] {
            let key = format!("{prefix}{name}");
            let t = tensors
                .get(&key)
                .ok_or_else(|| Error::format_mem(format!("missing tensor {key}")))?;
            if t.dims() != var.dims() {
                return Err(Error::format_mem(format!(
                    "tensor {key} has shape {:?}, the network needs {:?}",
                    t.dims(),
                    var.dims()
                )));
            }
            var.set(&t.to_dtype(self.dtype)?.to_device(&self.device)?)?;
        }
        Ok(())
    }

    /// A snapshot of the four networks' weights as `{net}.{key}` (copies, so later
    /// training does not change them).
    pub fn network_tensors(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (net, vars) in NETWORKS.iter().zip(&self.vars) {
            for (name, var) in vars {
                out.insert(format!("{net}.{name}"), var.as_tensor().detach().copy()?);
            }
        }
        Ok(out)
    }

    /// The weights of one network under its own keys (`model.1.weight`...).
    pub fn network(&self, net: &str) -> Result<HashMap<String, Tensor>> {
        let prefix = format!("{net}.");
        Ok(self
            .network_tensors()?
            .into_iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.to_owned(), v)))
            .collect())
    }

    /// One iteration of the seed's loop on a batch of content `real_a` and style
    /// `real_b` (NCHW in [-1, 1]):
    /// 1. generators: identity, GAN and cycle losses, one Adam step over both;
    /// 2. `d_a` on real A and pooled fake A; 3. `d_b` likewise. Each discriminator loss
    ///    is `(MSE(D(real), 1) + MSE(D(fake), 0)) / 2`.
    ///
    /// The generator step's backward pass also reaches the discriminators' weights;
    /// those gradients are simply not applied, as the seed zeroes them before the
    /// discriminator steps.
    pub fn step(
        &mut self,
        real_a: &Tensor,
        real_b: &Tensor,
        lr: f64,
        rng: &mut Rng,
    ) -> Result<StepLosses> {
        let s = self.settings;
        let id_a = l1(&self.g_ba.forward(real_a)?, real_a)?;
        let id_b = l1(&self.g_ab.forward(real_b)?, real_b)?;
        let identity = ((id_a + id_b)? / 2.0)?;

        let fake_b = self.g_ab.forward(real_a)?;
        let gan_ab = mse_to(&self.d_b.forward(&fake_b)?, 1.0)?;
        let fake_a = self.g_ba.forward(real_b)?;
        let gan_ba = mse_to(&self.d_a.forward(&fake_a)?, 1.0)?;
        let gan = ((gan_ab + gan_ba)? / 2.0)?;

        let cyc_a = l1(&self.g_ba.forward(&fake_b)?, real_a)?;
        let cyc_b = l1(&self.g_ab.forward(&fake_a)?, real_b)?;
        let cycle = ((cyc_a + cyc_b)? / 2.0)?;

        let loss_g = ((&gan + (&cycle * s.lambda_cycle)?)? + (&identity * s.lambda_identity)?)?;
        let grads = loss_g.backward()?;
        self.opt_g.step(&grads, lr)?;
        drop(grads);

        let d_a = Self::discriminator_step(
            &self.d_a,
            &mut self.opt_d_a,
            &mut self.pool_a,
            real_a,
            &fake_a,
            lr,
            rng,
        )?;
        let d_b = Self::discriminator_step(
            &self.d_b,
            &mut self.opt_d_b,
            &mut self.pool_b,
            real_b,
            &fake_b,
            lr,
            rng,
        )?;
        Ok(StepLosses {
            g: scalar(&loss_g)?,
            gan: scalar(&gan)?,
            cycle: scalar(&cycle)?,
            identity: scalar(&identity)?,
            d_a,
            d_b,
        })
    }

    fn discriminator_step(
        d: &Discriminator,
        opt: &mut Adam,
        pool: &mut ImagePool,
        real: &Tensor,
        fake: &Tensor,
        lr: f64,
        rng: &mut Rng,
    ) -> Result<f64> {
        let loss_real = mse_to(&d.forward(real)?, 1.0)?;
        let fake = pool.push_and_pop(fake, rng)?;
        let loss_fake = mse_to(&d.forward(&fake)?, 0.0)?;
        let loss = ((loss_real + loss_fake)? / 2.0)?;
        opt.step(&loss.backward()?, lr)?;
        Ok(scalar(&loss)?)
    }

    /// Tensors of a checkpoint: `net.*` weights, `opt.{g,d_a,d_b}.{m,v}.*` moments,
    /// `pool.{a,b}.{i}` images; plus the metadata that goes with them.
    pub fn checkpoint_parts(&self) -> Result<(HashMap<String, Tensor>, BTreeMap<String, String>)> {
        let mut t: HashMap<String, Tensor> = self
            .network_tensors()?
            .into_iter()
            .map(|(k, v)| (format!("net.{k}"), v))
            .collect();
        self.opt_g.state_tensors("opt.g.", &mut t);
        self.opt_d_a.state_tensors("opt.d_a.", &mut t);
        self.opt_d_b.state_tensors("opt.d_b.", &mut t);
        let mut meta = BTreeMap::new();
        for (name, pool) in [("a", &self.pool_a), ("b", &self.pool_b)] {
            for (i, img) in pool.images().iter().enumerate() {
                t.insert(format!("pool.{name}.{i}"), img.clone());
            }
            meta.insert(format!("pool.{name}.len"), pool.images().len().to_string());
        }
        for (name, opt) in [
            ("g", &self.opt_g),
            ("d_a", &self.opt_d_a),
            ("d_b", &self.opt_d_b),
        ] {
            meta.insert(format!("opt.{name}.step"), opt.step_count().to_string());
        }
        Ok((t, meta))
    }

    /// Restores what [`TrainState::checkpoint_parts`] wrote.
    pub fn restore_parts(
        &mut self,
        t: &HashMap<String, Tensor>,
        meta: &BTreeMap<String, String>,
    ) -> Result<()> {
        for net in NETWORKS {
            self.load_network(net, t, &format!("net.{net}."))?;
        }
        let number = |key: &str| -> Result<u64> {
            meta.get(key)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| Error::format_mem(format!("checkpoint metadata lacks {key}")))
        };
        for (name, opt) in [
            ("g", &mut self.opt_g),
            ("d_a", &mut self.opt_d_a),
            ("d_b", &mut self.opt_d_b),
        ] {
            let step = number(&format!("opt.{name}.step"))?;
            opt.load_state(&format!("opt.{name}."), t, step)
                .map_err(Error::format_mem)?;
        }
        for (name, pool) in [("a", &mut self.pool_a), ("b", &mut self.pool_b)] {
            let n = number(&format!("pool.{name}.len"))? as usize;
            if n > pool.capacity() {
                return Err(Error::format_mem(format!(
                    "the checkpoint's pool {name} holds {n} images, more than its size {}",
                    pool.capacity()
                )));
            }
            let images = (0..n)
                .map(|i| {
                    let key = format!("pool.{name}.{i}");
                    let img = t
                        .get(&key)
                        .ok_or_else(|| Error::format_mem(format!("missing tensor {key}")))?;
                    Ok(img.to_dtype(self.dtype)?.to_device(&self.device)?)
                })
                .collect::<Result<Vec<_>>>()?;
            pool.restore(images);
        }
        Ok(())
    }
}
