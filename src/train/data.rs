//! Training images: two unpaired folders, augmented as the seed does (torchvision
//! `Resize(int(1.12 * size), BICUBIC)`, `RandomCrop(size)`, `RandomHorizontalFlip()`).
//!
//! Images are decoded when a batch needs them rather than held in memory, so a folder of
//! 100 000 photos costs file-list memory only. An epoch walks a shuffled order of
//! `max(|A|, |B|)` indices: content image `i % |A|` is paired with a style image drawn
//! at random, as the seed's unaligned `ImageDataset` under a shuffling `DataLoader`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use ::image::imageops::{self, FilterType};
use ::image::{ImageBuffer, Rgb};
use candle_core::{DType, Device, Tensor};

use super::rng::{Rng, Stream};
use crate::error::{Error, Result};
use crate::io::{read_image, DecodeLimits};
use crate::pixels::Pixels;

/// File extensions taken as images; anything else in the folder is ignored silently.
pub const IMAGE_EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "tif", "tiff", "webp"];

/// The seed's margin for random crops: resize to 1.12 x the crop, then crop.
const RESIZE_FACTOR: f64 = 1.12;

/// One folder of images.
#[derive(Debug, Clone)]
pub struct Domain {
    pub dir: PathBuf,
    /// Sorted, so an order derived from the seed means the same files on every machine.
    pub files: Vec<PathBuf>,
    /// Indices that failed to decode; they are replaced by a readable neighbour.
    bad: HashSet<usize>,
}

impl Domain {
    /// Lists `dir`'s images (not recursing) and checks that each header can be read.
    /// `what` names the folder in messages ("content", "style"). Unreadable files are
    /// skipped with a warning in `warnings`; none left is an error.
    pub fn open(dir: &Path, what: &str, warnings: &mut Vec<String>) -> Result<Self> {
        let meta = std::fs::metadata(dir).map_err(|e| {
            Error::InvalidArgument(format!(
                "{what} folder {}: {}",
                dir.display(),
                if e.kind() == std::io::ErrorKind::NotFound {
                    "does not exist".to_string()
                } else {
                    e.to_string()
                }
            ))
        })?;
        if !meta.is_dir() {
            return Err(Error::InvalidArgument(format!(
                "{what} folder {} is a file, not a folder of images",
                dir.display()
            )));
        }
        let mut candidates: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && has_image_extension(p))
            .collect();
        candidates.sort();
        if candidates.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "{what} folder {} holds no images (looked for .{} files)",
                dir.display(),
                IMAGE_EXTENSIONS.join(", .")
            )));
        }
        let total = candidates.len();
        let mut files = Vec::with_capacity(total);
        for p in candidates {
            match probe(&p) {
                Ok(()) => files.push(p),
                Err(e) => warnings.push(format!("skipping {what} image {e}")),
            }
        }
        if files.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "none of the {total} images in {what} folder {} can be read",
                dir.display()
            )));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            files,
            bad: HashSet::new(),
        })
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Decodes image `i`; if it turns out unreadable (a header that lied, a truncated
    /// file), warns once and uses the next readable one, so one bad file cannot stop a
    /// long run. Errors only when no file in the folder decodes.
    fn load(&mut self, i: usize, warnings: &mut Vec<String>) -> Result<(Pixels, usize)> {
        let n = self.files.len();
        for k in 0..n {
            let j = (i + k) % n;
            if self.bad.contains(&j) {
                continue;
            }
            match read_image(&self.files[j], &DecodeLimits::default()) {
                Ok(p) => return Ok((p, j)),
                Err(e) => {
                    warnings.push(format!("skipping unreadable image: {e}"));
                    self.bad.insert(j);
                }
            }
        }
        Err(Error::InvalidArgument(format!(
            "no image in {} can be decoded",
            self.dir.display()
        )))
    }
}

fn has_image_extension(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Reads only the header: cheap enough for a folder of 100 000 files at start-up.
fn probe(p: &Path) -> std::result::Result<(), String> {
    let (w, h) = ::image::ImageReader::open(p)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| format!("{}: {e}", p.display()))?
        .into_dimensions()
        .map_err(|e| format!("{}: {e}", p.display()))?;
    if w == 0 || h == 0 {
        return Err(format!("{}: image has no pixels", p.display()));
    }
    Ok(())
}

/// The seed's `transforms.Resize(s)` with one number: the shorter side becomes `s`,
/// the longer `int(s * long / short)`; bicubic (Catmull-Rom, PIL's `BICUBIC` kernel).
fn resize_shorter(p: &Pixels, s: u32) -> Result<ImageBuffer<Rgb<f32>, Vec<f32>>> {
    let (w, h) = (p.width(), p.height());
    let (nw, nh) = if w <= h {
        (s, (f64::from(s) * f64::from(h) / f64::from(w)) as u32)
    } else {
        ((f64::from(s) * f64::from(w) / f64::from(h)) as u32, s)
    };
    // Alpha is dropped as PIL's `convert("RGB")` does.
    let ch = usize::from(p.channels());
    let rgb: Vec<f32> = p
        .data()
        .chunks_exact(ch)
        .flat_map(|px| [px[0], px[1], px[2]])
        .collect();
    let src = ImageBuffer::<Rgb<f32>, _>::from_raw(w, h, rgb)
        .ok_or_else(|| Error::format_mem("image buffer does not match its size"))?;
    let mut out = if (nw, nh) == (w, h) {
        src
    } else {
        imageops::resize(&src, nw.max(1), nh.max(1), FilterType::CatmullRom)
    };
    // Bicubic overshoots; PIL clamps when it stores 8-bit samples.
    out.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
    Ok(out)
}

/// A `size` x `size` crop at (`top`, `left`), optionally mirrored, as planar CHW in
/// [-1, 1] (torchvision's `ToTensor` + `Normalize(0.5, 0.5)`).
fn crop_planar(
    img: &ImageBuffer<Rgb<f32>, Vec<f32>>,
    top: u32,
    left: u32,
    size: u32,
    flip: bool,
) -> Vec<f32> {
    let s = size as usize;
    let mut out = vec![0f32; 3 * s * s];
    for y in 0..size {
        for x in 0..size {
            let sx = if flip { size - 1 - x } else { x };
            let px = img.get_pixel(left + sx, top + y);
            let o = y as usize * s + x as usize;
            for c in 0..3 {
                out[c * s * s + o] = px[c] * 2.0 - 1.0;
            }
        }
    }
    out
}

/// The seed's training transform, drawing the crop position and the flip from `rng`
/// in torchvision's order (row, column, flip).
pub fn augment(p: &Pixels, size: u32, rng: &mut Rng) -> Result<Vec<f32>> {
    let big = resize_shorter(p, (f64::from(size) * RESIZE_FACTOR) as u32)?;
    let top = rng.below(u64::from(big.height() - size) + 1) as u32;
    let left = rng.below(u64::from(big.width() - size) + 1) as u32;
    let flip = rng.uniform() < 0.5;
    Ok(crop_planar(&big, top, left, size, flip))
}

/// The deterministic view used for sample grids: shorter side to `size`, centre crop.
pub fn center_view(p: &Pixels, size: u32) -> Result<Vec<f32>> {
    let img = resize_shorter(p, size)?;
    let top = (img.height() - size) / 2;
    let left = (img.width() - size) / 2;
    Ok(crop_planar(&img, top, left, size, false))
}

/// Both folders and the epoch order.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub content: Domain,
    pub style: Domain,
    /// The shuffled order of the epoch last asked for.
    order: Option<(u64, Vec<u32>)>,
}

/// One batch: content and style images, `(n, 3, size, size)`.
pub struct Batch {
    pub content: Tensor,
    pub style: Tensor,
}

impl Dataset {
    /// Opens both folders; warnings about skipped files go to `warnings`.
    pub fn open(content: &Path, style: &Path, warnings: &mut Vec<String>) -> Result<Self> {
        Ok(Self {
            content: Domain::open(content, "content", warnings)?,
            style: Domain::open(style, "style", warnings)?,
            order: None,
        })
    }

    /// Images per epoch: the larger folder, as the seed's `__len__`.
    pub fn epoch_len(&self) -> usize {
        self.content.len().max(self.style.len())
    }

    /// Iterations per epoch with batches of `batch` (the last one may be smaller, as a
    /// `DataLoader` without `drop_last`).
    pub fn iterations_per_epoch(&self, batch: usize) -> u64 {
        self.epoch_len().div_ceil(batch.max(1)) as u64
    }

    /// The batch of iteration `it` of a run seeded `seed`: a pure function of
    /// (`seed`, `it`, the file lists), which is what lets a resumed run repeat exactly.
    #[allow(clippy::too_many_arguments)]
    pub fn batch(
        &mut self,
        it: u64,
        batch: usize,
        size: u32,
        seed: u64,
        device: &Device,
        dtype: DType,
        warnings: &mut Vec<String>,
    ) -> Result<Batch> {
        let batch = batch.max(1);
        let per_epoch = self.iterations_per_epoch(batch);
        let (epoch, k) = (it / per_epoch, (it % per_epoch) as usize);
        if self.order.as_ref().map(|o| o.0) != Some(epoch) {
            let mut order: Vec<u32> = (0..self.epoch_len() as u32).collect();
            Rng::derive(seed, Stream::Shuffle, epoch).shuffle(&mut order);
            self.order = Some((epoch, order));
        }
        let order = &self.order.as_ref().expect("set above").1;
        let picks: Vec<u32> = order[k * batch..((k + 1) * batch).min(order.len())].to_vec();
        let mut rng = Rng::derive(seed, Stream::Augment, it);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for &i in &picks {
            // The seed's `__getitem__` order: pick B, transform A, transform B.
            let bi = rng.below(self.style.len() as u64) as usize;
            let (img, _) = self
                .content
                .load(i as usize % self.content.len(), warnings)?;
            a.extend(augment(&img, size, &mut rng)?);
            let (img, _) = self.style.load(bi, warnings)?;
            b.extend(augment(&img, size, &mut rng)?);
        }
        let shape = (picks.len(), 3, size as usize, size as usize);
        let to = |v: Vec<f32>| -> Result<Tensor> {
            Ok(Tensor::from_vec(v, shape, &Device::Cpu)?
                .to_dtype(dtype)?
                .to_device(device)?)
        };
        Ok(Batch {
            content: to(a)?,
            style: to(b)?,
        })
    }

    /// The first readable content and style image, centre-cropped: the fixed inputs of
    /// sample grids, so grids from different iterations compare like with like.
    pub fn sample_inputs(
        &mut self,
        size: u32,
        device: &Device,
        dtype: DType,
        warnings: &mut Vec<String>,
    ) -> Result<(Tensor, Tensor)> {
        let shape = (1, 3, size as usize, size as usize);
        let (a, _) = self.content.load(0, warnings)?;
        let (b, _) = self.style.load(0, warnings)?;
        let t = |p: &Pixels| -> Result<Tensor> {
            Ok(
                Tensor::from_vec(center_view(p, size)?, shape, &Device::Cpu)?
                    .to_dtype(dtype)?
                    .to_device(device)?,
            )
        };
        Ok((t(&a)?, t(&b)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pixels::BitDepth;

    fn ramp(w: u32, h: u32) -> Pixels {
        let mut p = Pixels::new(w, h, 3, BitDepth::Eight).unwrap();
        for y in 0..h {
            for x in 0..w {
                let i = ((y * w + x) * 3) as usize;
                p.data_mut()[i] = x as f32 / w as f32;
                p.data_mut()[i + 1] = y as f32 / h as f32;
                p.data_mut()[i + 2] = 0.5;
            }
        }
        p
    }

    #[test]
    fn resize_keeps_aspect_like_torchvision() {
        let img = resize_shorter(&ramp(100, 50), 35).unwrap();
        assert_eq!((img.width(), img.height()), (70, 35));
        let img = resize_shorter(&ramp(30, 47), 35).unwrap();
        // int(35 * 47 / 30) = int(54.83) = 54
        assert_eq!((img.width(), img.height()), (35, 54));
    }

    #[test]
    fn augment_crops_flips_and_normalizes() {
        let p = ramp(40, 40);
        let mut flipped = false;
        let mut plain = false;
        for it in 0..16 {
            let mut rng = Rng::derive(3, Stream::Augment, it);
            let v = augment(&p, 32, &mut rng).unwrap();
            assert_eq!(v.len(), 3 * 32 * 32);
            assert!(v.iter().all(|x| (-1.0..=1.0).contains(x)));
            // Red grows with x unless mirrored.
            if v[31] > v[0] {
                plain = true;
            } else {
                flipped = true;
            }
            // Blue is constant 0.5 -> 0.
            assert!(v[2 * 32 * 32..].iter().all(|x| x.abs() < 1e-3));
        }
        assert!(flipped && plain);
    }
}
