//! The checkpoint key layout of a CycleGAN ResNet generator: the only place key names and
//! layer indices live. The generator builds from these names and the weight loader detects
//! a layout and its shape from them, so the two cannot disagree.
//!
//! Both published layouts are PyTorch `nn.Sequential`s under `model.`: the seed article's
//! `GeneratorResNet` (`model.N.block.{1,5}` residual convolutions, nearest upsampling + a
//! convolution) and pytorch-CycleGAN-and-pix2pix's `ResnetGenerator`
//! (`model.N.conv_block.{1,5}`, ConvTranspose upsampling, which has no upsample module and so
//! shifts the indices after the blocks).

/// Which published layout a set of weights follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// The seed article's `GeneratorResNet`: `model.N.block.{1,5}`, nearest upsample + conv.
    Seed,
    /// pytorch-CycleGAN-and-pix2pix `ResnetGenerator`: `model.N.conv_block.{1,5}`, ConvTranspose.
    Official,
}

/// The `nn.Sequential` every generator's layers live under.
pub const ROOT: &str = "model";

/// Index of the head convolution (after `ReflectionPad2d(3)` at 0).
pub const HEAD: usize = 1;

/// Indices of the two stride-2 convolutions.
pub const DOWN: [usize; 2] = [4, 7];

/// Index of the first residual block; block `i` is at `FIRST_BLOCK + i`.
pub const FIRST_BLOCK: usize = 10;

/// Indices of the two convolutions inside a residual block (after their reflection pads).
pub const BLOCK_CONVS: [usize; 2] = [1, 5];

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::Seed => "seed",
            Layout::Official => "official",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "seed" => Some(Layout::Seed),
            "official" => Some(Layout::Official),
            _ => None,
        }
    }

    /// The name of a residual block's inner `nn.Sequential`.
    pub fn block_key(self) -> &'static str {
        match self {
            Layout::Seed => "block",
            Layout::Official => "conv_block",
        }
    }

    /// Every layout, in the order a loader tries them.
    pub const ALL: [Layout; 2] = [Layout::Seed, Layout::Official];

    /// Sequential indices of the layers after `blocks` residual blocks:
    /// (first upsampling conv, second, output conv).
    pub fn tail_indices(self, blocks: usize) -> (usize, usize, usize) {
        let b = FIRST_BLOCK + blocks;
        match self {
            Layout::Seed => (b + 1, b + 5, b + 9),
            Layout::Official => (b, b + 3, b + 7),
        }
    }

    /// Key of residual block `i`'s convolution `conv` (0 or 1), without `.weight`/`.bias`.
    pub fn block_conv(self, i: usize, conv: usize) -> String {
        format!(
            "{ROOT}.{}.{}.{}",
            FIRST_BLOCK + i,
            self.block_key(),
            BLOCK_CONVS[conv]
        )
    }
}

/// The weight tensor's key of a layer key.
pub fn weight_key(layer: &str) -> String {
    format!("{layer}.weight")
}

/// Key of the layer at sequential index `i`, without `.weight`/`.bias`.
pub fn layer(i: usize) -> String {
    format!("{ROOT}.{i}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_pytorch_modules() {
        assert_eq!(layer(HEAD), "model.1");
        assert_eq!(Layout::Seed.block_conv(0, 1), "model.10.block.5");
        assert_eq!(Layout::Official.block_conv(8, 0), "model.18.conv_block.1");
        // Seed, 9 blocks: upsample (19), conv 20, ..., head 28; official: 19, 22, 26.
        assert_eq!(Layout::Seed.tail_indices(9), (20, 24, 28));
        assert_eq!(Layout::Official.tail_indices(9), (19, 22, 26));
        assert_eq!(Layout::Official.tail_indices(6), (16, 19, 23));
    }
}
