//! Adam as `torch.optim.Adam` computes it, with state we can checkpoint.
//!
//! candle-nn's `AdamW` with `weight_decay: 0` performs the same update, but keeps its
//! moments and step count private, so a resumed run could not continue exactly; this is
//! the same few lines with the state in the open, in PyTorch's operation order
//! (`denom = sqrt(v) / sqrt(1 - b2^t) + eps`, `p -= lr / (1 - b1^t) * m / denom`).

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

/// Adam's hyper-parameters (the learning rate comes with each step, from the schedule).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamParams {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl Default for AdamParams {
    /// The paper's betas (0.5, 0.999): a short first-moment memory suits the moving
    /// target of adversarial training. PyTorch's eps.
    fn default() -> Self {
        Self {
            beta1: 0.5,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

#[derive(Debug)]
struct Slot {
    name: String,
    var: Var,
    m: Tensor,
    v: Tensor,
}

/// One optimiser over a named set of variables.
#[derive(Debug)]
pub struct Adam {
    params: AdamParams,
    slots: Vec<Slot>,
    /// Completed updates (PyTorch keeps one per parameter; ours always move together).
    step: u64,
}

impl Adam {
    /// `vars` are (name, variable) pairs; names identify the moments in checkpoints.
    pub fn new(vars: Vec<(String, Var)>, params: AdamParams) -> Result<Self> {
        let slots = vars
            .into_iter()
            .map(|(name, var)| {
                let m = var.as_tensor().zeros_like()?;
                let v = m.clone();
                Ok(Slot { name, var, m, v })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            params,
            slots,
            step: 0,
        })
    }

    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// One update at learning rate `lr`. Variables without a gradient keep their value
    /// and moments, as PyTorch skips parameters whose `.grad` is `None`.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.step += 1;
        let AdamParams { beta1, beta2, eps } = self.params;
        let t = self.step as i32;
        let step_size = lr / (1.0 - beta1.powi(t));
        let bc2_sqrt = (1.0 - beta2.powi(t)).sqrt();
        for s in &mut self.slots {
            let Some(g) = grads.get(s.var.as_tensor()) else {
                continue;
            };
            s.m = ((&s.m * beta1)? + (g * (1.0 - beta1))?)?;
            s.v = ((&s.v * beta2)? + (g.sqr()? * (1.0 - beta2))?)?;
            let denom = ((s.v.sqrt()? / bc2_sqrt)? + eps)?;
            let update = ((&s.m / denom)? * step_size)?;
            s.var.set(&(s.var.as_tensor() - update)?)?;
        }
        Ok(())
    }

    /// The moments as `{prefix}m.{name}` and `{prefix}v.{name}`.
    pub fn state_tensors(&self, prefix: &str, out: &mut HashMap<String, Tensor>) {
        for s in &self.slots {
            out.insert(format!("{prefix}m.{}", s.name), s.m.clone());
            out.insert(format!("{prefix}v.{}", s.name), s.v.clone());
        }
    }

    /// Restores moments written by [`Adam::state_tensors`] and the step count.
    pub fn load_state(
        &mut self,
        prefix: &str,
        tensors: &HashMap<String, Tensor>,
        step: u64,
    ) -> std::result::Result<(), String> {
        for s in &mut self.slots {
            let like = s.var.as_tensor();
            for (which, dst) in [("m", &mut s.m), ("v", &mut s.v)] {
                let key = format!("{prefix}{which}.{}", s.name);
                let t = tensors
                    .get(&key)
                    .ok_or_else(|| format!("missing optimiser tensor {key}"))?;
                if t.dims() != like.dims() {
                    return Err(format!(
                        "optimiser tensor {key} has shape {:?}, expected {:?}",
                        t.dims(),
                        like.dims()
                    ));
                }
                *dst = t
                    .to_dtype(like.dtype())
                    .and_then(|t| t.to_device(like.device()))
                    .map_err(|e| e.to_string())?;
            }
        }
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    /// Two steps by hand with PyTorch's formulas.
    #[test]
    fn matches_torch_adam() -> Result<()> {
        let p = Var::from_vec(vec![1.0f64, -2.0], 2, &Device::Cpu)?;
        let mut opt = Adam::new(vec![("p".into(), p.clone())], AdamParams::default())?;
        let (b1, b2, eps, lr) = (0.5f64, 0.999f64, 1e-8, 0.1);
        let mut want = [1.0f64, -2.0];
        let (mut m, mut v) = ([0.0f64; 2], [0.0f64; 2]);
        for t in 1..=2 {
            // loss = sum(p^3) so the gradient changes between steps.
            let loss = p.as_tensor().powf(3.0)?.sum_all()?;
            let grads = loss.backward()?;
            opt.step(&grads, lr)?;
            for i in 0..2 {
                let g = 3.0 * want[i] * want[i];
                m[i] = b1 * m[i] + (1.0 - b1) * g;
                v[i] = b2 * v[i] + (1.0 - b2) * g * g;
                let denom = v[i].sqrt() / (1.0 - b2.powi(t)).sqrt() + eps;
                want[i] -= lr / (1.0 - b1.powi(t)) * m[i] / denom;
            }
        }
        let got = p.as_tensor().to_dtype(DType::F64)?.to_vec1::<f64>()?;
        for i in 0..2 {
            assert!((got[i] - want[i]).abs() < 1e-12, "{got:?} {want:?}");
        }
        assert_eq!(opt.step_count(), 2);
        Ok(())
    }
}
