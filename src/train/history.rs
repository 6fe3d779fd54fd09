//! The history of generated images the discriminators also learn from (Shrivastava et
//! al.; the seed's `ReplayBuffer`). Judging old fakes as well as the newest keeps the
//! discriminator from chasing the generator's latest trick, which damps oscillation.

use candle_core::{Result, Tensor};

use super::rng::Rng;

/// Up to `capacity` past fakes, each `(1, C, H, W)` and detached from the graph.
#[derive(Debug, Clone)]
pub struct ImagePool {
    capacity: usize,
    images: Vec<Tensor>,
}

impl ImagePool {
    /// `capacity` 0 disables the pool: every batch passes straight through.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            images: Vec::with_capacity(capacity),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The stored images in slot order (for checkpoints).
    pub fn images(&self) -> &[Tensor] {
        &self.images
    }

    /// Refills the pool from a checkpoint.
    pub fn restore(&mut self, images: Vec<Tensor>) {
        self.images = images;
    }

    /// The seed's `push_and_pop`, image by image: while the pool is filling, each image is
    /// stored and returned; afterwards, with probability 1/2 a random stored image is
    /// returned and replaced by the new one, otherwise the new one is returned as is.
    /// The draws are `uniform() > 0.5`, then a slot `below(capacity)`, as the seed's
    /// `random.uniform(0, 1) > 0.5` and `random.randint(0, max_size - 1)`.
    pub fn push_and_pop(&mut self, batch: &Tensor, rng: &mut Rng) -> Result<Tensor> {
        let batch = batch.detach();
        if self.capacity == 0 {
            return Ok(batch);
        }
        let n = batch.dim(0)?;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let el = batch.narrow(0, i, 1)?.contiguous()?;
            if self.images.len() < self.capacity {
                self.images.push(el.clone());
                out.push(el);
            } else if rng.uniform() > 0.5 {
                let slot = rng.below(self.capacity as u64) as usize;
                out.push(std::mem::replace(&mut self.images[slot], el));
            } else {
                out.push(el);
            }
        }
        Tensor::cat(&out, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::rng::Stream;
    use candle_core::Device;

    fn img(v: f32) -> Tensor {
        Tensor::full(v, (1, 1, 1, 1), &Device::Cpu).unwrap()
    }

    fn val(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn filling_pool_returns_the_input_then_mixes_history() {
        let mut pool = ImagePool::new(3);
        let mut rng = Rng::derive(0, Stream::Pool, 0);
        for v in 0..3 {
            assert_eq!(
                val(&pool.push_and_pop(&img(v as f32), &mut rng).unwrap()),
                [v as f32]
            );
        }
        assert_eq!(pool.images().len(), 3);
        let mut old = 0;
        for v in 3..200 {
            let got = val(&pool.push_and_pop(&img(v as f32), &mut rng).unwrap())[0];
            if got != v as f32 {
                old += 1;
                assert!(got < v as f32);
            }
            assert_eq!(pool.images().len(), 3);
        }
        // About half the answers come from the history.
        assert!((60..140).contains(&old), "{old}");
    }

    #[test]
    fn a_batch_is_handled_image_by_image() {
        let mut pool = ImagePool::new(2);
        let mut rng = Rng::derive(0, Stream::Pool, 0);
        let batch = Tensor::arange(0f32, 3., &Device::Cpu)
            .unwrap()
            .reshape((3, 1, 1, 1))
            .unwrap();
        let out = pool.push_and_pop(&batch, &mut rng).unwrap();
        assert_eq!(out.dims(), &[3, 1, 1, 1]);
        // The first two fill the pool and come back unchanged.
        assert_eq!(val(&out)[..2], [0., 1.]);
        let mut off = ImagePool::new(0);
        assert_eq!(
            val(&off.push_and_pop(&batch, &mut rng).unwrap()),
            [0., 1., 2.]
        );
    }
}
