//! The seed's 70x70 PatchGAN discriminator: a 256x256 input gives a 16x16 map of
//! real/fake scores, each judging one 70x70 patch.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::conv::{Conv, ConvKind};
use super::layers::instance_norm2d;

/// PatchGAN discriminator with keys `model.{0,2,5,8,12}` as the seed's `Discriminator`.
#[derive(Debug, Clone)]
pub struct Discriminator {
    convs: [Conv; 4],
    head: Conv,
}

impl Discriminator {
    /// `ndf` is the first layer's filter count (64 in the paper).
    pub fn new(vb: &VarBuilder, ndf: usize) -> Result<Self> {
        let vb = vb.pp("model");
        let k = ConvKind::Forward {
            stride: 2,
            padding: 1,
        };
        let convs = [
            Conv::new(&vb, "0", 3, ndf, 4, k)?,
            Conv::new(&vb, "2", ndf, 2 * ndf, 4, k)?,
            Conv::new(&vb, "5", 2 * ndf, 4 * ndf, 4, k)?,
            Conv::new(&vb, "8", 4 * ndf, 8 * ndf, 4, k)?,
        ];
        let head = Conv::new(
            &vb,
            "12",
            8 * ndf,
            1,
            4,
            ConvKind::Forward {
                stride: 1,
                padding: 1,
            },
        )?;
        Ok(Self { convs, head })
    }
}

impl Module for Discriminator {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for (i, conv) in self.convs.iter().enumerate() {
            h = conv.forward(&h)?;
            if i > 0 {
                h = instance_norm2d(&h)?;
            }
            h = candle_nn::ops::leaky_relu(&h, 0.2)?;
        }
        // ZeroPad2d((1, 0, 1, 0)): one column on the left, one row on top.
        let h = h.pad_with_zeros(3, 1, 0)?.pad_with_zeros(2, 1, 0)?;
        self.head.forward(&h)
    }
}
