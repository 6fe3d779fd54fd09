//! The engine's working pixel form and every conversion into and out of it.
//!
//! Keeping all sample conversions in this one file is what guarantees parity with the
//! PyTorch reference: 8-bit input becomes `p / 255`, the network sees `v * 2 - 1`
//! (bit-identical to torchvision's `Normalize(0.5, 0.5)`), and 8-bit output is
//! `round(v * 255)` with `v = ((y + 1) / 2).clamp(0, 1)`, which equals
//! `round((y + 1) * 127.5)` because halving is exact in binary floating point.

use crate::error::{reserve, try_vec, Error, Result};
use ::image::imageops::{self, FilterType};
use ::image::{ImageBuffer, Rgb, Rgba};

/// An image in the engine's working form: interleaved f32 samples in [0, 1],
/// 3 (RGB) or 4 (RGBA, straight alpha) channels, plus the bit depth it came in with so
/// that the output can be written at the same depth.
///
/// The fields are private so that every `Pixels` is well formed: width and height are at
/// least 1, there are 3 or 4 channels, and the sample buffer holds exactly
/// `width * height * channels` samples. Build one with [`Pixels::new`] (black),
/// [`Pixels::from_data`] (your samples) or by decoding a file ([`crate::io::read_image`]);
/// change samples through [`Pixels::data_mut`], a slice whose length cannot change. Nothing
/// that takes a `Pixels` then has to check its shape again, and nothing can panic on a
/// short buffer.
///
/// ```
/// use cyclegan::{BitDepth, Pixels};
///
/// // Two RGB pixels: orange, then teal.
/// let mut p = Pixels::from_data(2, 1, 3, BitDepth::Eight, vec![1.0, 0.5, 0.0, 0.0, 0.5, 0.5])?;
/// p.data_mut()[1] = 0.25;
/// assert_eq!((p.width(), p.height(), p.channels()), (2, 1, 3));
/// assert_eq!(p.get(0, 0, 1), 0.25);
/// // Five samples cannot be a 2x1 RGB image.
/// assert!(Pixels::from_data(2, 1, 3, BitDepth::Eight, vec![0.0; 5]).is_err());
/// # Ok::<(), cyclegan::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Pixels {
    width: u32,
    height: u32,
    /// 3 or 4.
    channels: u8,
    depth: BitDepth,
    /// `width * height * channels` samples, row-major, interleaved.
    data: Vec<f32>,
}

/// Sample depth of the source, remembered so the output keeps the input's precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BitDepth {
    Eight,
    Sixteen,
    Float,
}

/// `width * height * channels` as a `usize`, or `None` when it overflows; the single
/// place that sizes a sample buffer so no caller can get the arithmetic wrong.
pub(crate) fn sample_count(width: u32, height: u32, channels: u8) -> Option<usize> {
    usize::try_from(width)
        .ok()?
        .checked_mul(usize::try_from(height).ok()?)?
        .checked_mul(usize::from(channels))
}

/// The sample count of a valid image shape, or [`Error::InvalidArgument`] saying which
/// rule the shape breaks: the one place that states what a [`Pixels`] may look like.
fn checked_len(width: u32, height: u32, channels: u8) -> Result<usize> {
    if width == 0 || height == 0 {
        return Err(Error::InvalidArgument(format!(
            "image size {width}x{height}: width and height must be at least 1"
        )));
    }
    if channels != 3 && channels != 4 {
        return Err(Error::InvalidArgument(format!(
            "channels = {channels}: must be 3 (RGB) or 4 (RGBA)"
        )));
    }
    sample_count(width, height, channels).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "image size {width}x{height}x{channels} does not fit in memory on this platform"
        ))
    })
}

/// Maps any float onto the working range; NaN becomes 0 so that no later step (rounding,
/// casting, the network) ever sees it.
#[inline]
pub(crate) fn sanitize(v: f32) -> f32 {
    if v.is_nan() {
        0.0
    } else {
        v.clamp(0.0, 1.0)
    }
}

/// 8-bit quantisation exactly as the reference does it (see the module docs).
#[inline]
pub(crate) fn to_u8(v: f32) -> u8 {
    // `as` saturates and maps NaN to 0, so this cannot misbehave on any input.
    (v * 255.0).round().clamp(0.0, 255.0) as u8
}

#[inline]
pub(crate) fn to_u16(v: f32) -> u16 {
    (v * 65535.0).round().clamp(0.0, 65535.0) as u16
}

/// Division (not multiplication by a reciprocal) matches torchvision's `to_tensor` bit for bit.
#[inline]
pub(crate) fn from_u8(p: u8) -> f32 {
    f32::from(p) / 255.0
}

#[inline]
pub(crate) fn from_u16(p: u16) -> f32 {
    f32::from(p) / 65535.0
}

impl Pixels {
    /// Allocates a black (and fully transparent, for RGBA) image, refusing sizes whose
    /// buffer length would overflow rather than wrapping into a too-small allocation. The
    /// buffer is allocated fallibly: a size the process cannot hold is
    /// [`Error::OutOfMemory`], not an abort (a 16000x16000 image needs 4 GB here).
    ///
    /// A zero width or height, or a channel count other than 3 or 4, is
    /// [`Error::InvalidArgument`].
    pub fn new(width: u32, height: u32, channels: u8, depth: BitDepth) -> Result<Self> {
        let n = checked_len(width, height, channels)?;
        let data = try_vec(n, 0.0, &format!("a {width}x{height} working image"))?;
        Ok(Pixels {
            width,
            height,
            channels,
            depth,
            data,
        })
    }

    /// Wraps samples you already have: `data` is `width * height * channels` f32 samples,
    /// row-major and interleaved (RGB or RGBA with straight alpha), each in [0, 1].
    ///
    /// Samples outside [0, 1] are clamped and NaN becomes 0, as when float pixels come
    /// in through a file or the C ABI, because everything downstream relies on that range.
    /// A zero width or height, a channel count other than 3 or 4, or a `data` of any other
    /// length is [`Error::InvalidArgument`], which names the length that was expected; the
    /// buffer is then dropped.
    pub fn from_data(
        width: u32,
        height: u32,
        channels: u8,
        depth: BitDepth,
        data: Vec<f32>,
    ) -> Result<Self> {
        let mut p = Self::from_parts(width, height, channels, depth, data)?;
        p.data.iter_mut().for_each(|v| *v = sanitize(*v));
        Ok(p)
    }

    /// [`Pixels::from_data`] for samples already known to be in [0, 1] (the decoders'):
    /// the shape is checked, the values are trusted, so no second pass over them.
    pub(crate) fn from_parts(
        width: u32,
        height: u32,
        channels: u8,
        depth: BitDepth,
        data: Vec<f32>,
    ) -> Result<Self> {
        let n = checked_len(width, height, channels)?;
        if data.len() != n {
            return Err(Error::InvalidArgument(format!(
                "image data holds {} samples but a {width}x{height} image with {channels} \
                 channels needs exactly width * height * channels = {n}",
                data.len()
            )));
        }
        Ok(Pixels {
            width,
            height,
            channels,
            depth,
            data,
        })
    }

    /// Width in pixels, at least 1.
    #[inline]
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels, at least 1.
    #[inline]
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Samples per pixel: 3 (RGB) or 4 (RGBA, straight alpha).
    #[inline]
    pub fn channels(&self) -> u8 {
        self.channels
    }

    /// The depth the image came in with, which the encoders keep ([`crate::io`]).
    #[inline]
    pub fn depth(&self) -> BitDepth {
        self.depth
    }

    /// Changes the depth the image will be written at; the samples stay as they are.
    #[inline]
    pub fn set_depth(&mut self, depth: BitDepth) {
        self.depth = depth;
    }

    /// The `width * height * channels` samples, row-major and interleaved.
    #[inline]
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The samples, writable. A slice, so the length (and with it the image's shape)
    /// cannot change. Keep values in [0, 1], the range every constructor guarantees: a
    /// value outside it never causes a panic and is clamped when the image is written to a
    /// file, but what stylizing makes of it is unspecified.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// The sample buffer, giving up the image (no copy).
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// A copy, or an error instead of an abort when memory runs out (a host process must
    /// survive a picture too large for it).
    pub fn try_clone(&self) -> Result<Self> {
        let mut data = Vec::new();
        crate::error::reserve(&mut data, self.data.len(), "a copy of the image")?;
        data.extend_from_slice(&self.data);
        Ok(Self { data, ..*self })
    }

    /// Whether the image has an alpha channel (4 channels).
    pub fn has_alpha(&self) -> bool {
        self.channels == 4
    }

    /// Sample `c` of pixel (`x`, `y`); out-of-range coordinates are a programming error
    /// and panic like slice indexing does.
    #[inline]
    pub fn get(&self, x: u32, y: u32, c: u8) -> f32 {
        let ch = usize::from(self.channels);
        self.data[(y as usize * self.width as usize + x as usize) * ch + usize::from(c)]
    }

    /// Number of pixels; cannot overflow because the buffer holds that many pixels.
    fn pixel_count(&self) -> usize {
        self.data.len() / usize::from(self.channels)
    }

    /// RGB only as planar CHW f32 in [-1, 1] (`x * 2 - 1`) — what the network eats.
    ///
    /// Alpha is not part of the model's input, so it is left out here and carried
    /// separately by the caller.
    pub fn to_planar_rgb(&self) -> Vec<f32> {
        let n = self.pixel_count();
        let ch = usize::from(self.channels);
        let mut out = vec![0.0f32; n.saturating_mul(3)];
        let (r, rest) = out.split_at_mut(n);
        let (g, b) = rest.split_at_mut(n);
        for (i, px) in self.data.chunks_exact(ch).take(n).enumerate() {
            r[i] = px[0] * 2.0 - 1.0;
            g[i] = px[1] * 2.0 - 1.0;
            b[i] = px[2] * 2.0 - 1.0;
        }
        out
    }

    /// [`Pixels::to_planar_rgb`] with the buffer allocated fallibly: a size the process
    /// cannot hold is [`Error::OutOfMemory`] rather than an abort.
    pub fn try_to_planar_rgb(&self) -> Result<Vec<f32>> {
        let n = self.pixel_count();
        let ch = usize::from(self.channels);
        let mut out = try_vec(n.saturating_mul(3), 0.0f32, "the network's input planes")?;
        let (r, rest) = out.split_at_mut(n);
        let (g, b) = rest.split_at_mut(n);
        for (i, px) in self.data.chunks_exact(ch).take(n).enumerate() {
            r[i] = px[0] * 2.0 - 1.0;
            g[i] = px[1] * 2.0 - 1.0;
            b[i] = px[2] * 2.0 - 1.0;
        }
        Ok(out)
    }

    /// [`Pixels::resized`], but checks first that the copies it makes fit in memory: the
    /// premultiplied copy and the result are reserved fallibly (and released) before the
    /// resampler allocates them, so a size the process cannot hold is
    /// [`Error::OutOfMemory`] rather than an abort.
    pub fn try_resized(&self, width: u32, height: u32) -> Result<Pixels> {
        let channels = if self.has_alpha() { 4 } else { 3 };
        let out = sample_count(width.max(1), height.max(1), channels).ok_or_else(|| {
            Error::OutOfMemory(format!("a {width}x{height} image does not fit in memory"))
        })?;
        let mut probe: Vec<f32> = Vec::new();
        let what = format!("resizing to {width}x{height}");
        reserve(&mut probe, out.saturating_add(self.data.len()), &what)?;
        drop(probe);
        Ok(self.resized(width, height))
    }

    /// Replaces RGB from planar CHW network output `y` in [-1, 1]:
    /// `value = ((y + 1) / 2).clamp(0, 1)`; alpha is untouched because the network never
    /// saw it.
    ///
    /// A `planar` of the wrong length only updates the pixels it fully covers, so a
    /// caller bug degrades the picture instead of crashing the host process.
    pub fn set_rgb_from_planar(&mut self, planar: &[f32]) {
        let n = self.pixel_count();
        let ch = usize::from(self.channels);
        let r = planar.get(..n).unwrap_or(&[]);
        let g = planar.get(n..n.saturating_mul(2)).unwrap_or(&[]);
        let b = planar
            .get(n.saturating_mul(2)..n.saturating_mul(3))
            .unwrap_or(&[]);
        let m = r.len().min(g.len()).min(b.len());
        for (i, px) in self.data.chunks_exact_mut(ch).take(m).enumerate() {
            px[0] = sanitize((r[i] + 1.0) / 2.0);
            px[1] = sanitize((g[i] + 1.0) / 2.0);
            px[2] = sanitize((b[i] + 1.0) / 2.0);
        }
    }

    /// Resizes to the working (or back to the original) resolution.
    ///
    /// Lanczos3 keeps detail when shrinking; CatmullRom avoids Lanczos' stronger ringing
    /// when enlarging. RGBA is resampled premultiplied so that the colour of fully
    /// transparent pixels cannot bleed into visible edges. Results are clamped to [0, 1]
    /// because both kernels overshoot. A zero target size is treated as 1 so that the
    /// result is always a valid image.
    pub fn resized(&self, width: u32, height: u32) -> Pixels {
        let (width, height) = (width.max(1), height.max(1));
        if width == self.width && height == self.height {
            return self.clone();
        }
        let filter = if u64::from(width) * u64::from(height)
            < u64::from(self.width) * u64::from(self.height)
        {
            FilterType::Lanczos3
        } else {
            FilterType::CatmullRom
        };
        let channels = self.channels;
        // `from_raw` cannot refuse a well-formed `Pixels`; a black image rather than a
        // panic keeps that promise even if this code ever changes.
        let black = || Pixels {
            width,
            height,
            channels,
            depth: self.depth,
            data: vec![0.0; sample_count(width, height, channels).unwrap_or(0)],
        };
        let data = if self.has_alpha() {
            let mut pre = self.data.clone();
            for px in pre.chunks_exact_mut(4) {
                let a = px[3];
                px[0] *= a;
                px[1] *= a;
                px[2] *= a;
            }
            let Some(src) = ImageBuffer::<Rgba<f32>, _>::from_raw(self.width, self.height, pre)
            else {
                return black();
            };
            let mut out = imageops::resize(&src, width, height, filter).into_raw();
            for px in out.chunks_exact_mut(4) {
                let a = sanitize(px[3]);
                px[3] = a;
                for c in &mut px[..3] {
                    *c = if a > 0.0 { sanitize(*c / a) } else { 0.0 };
                }
            }
            out
        } else {
            let Some(src) =
                ImageBuffer::<Rgb<f32>, _>::from_raw(self.width, self.height, self.data.clone())
            else {
                return black();
            };
            let mut out = imageops::resize(&src, width, height, filter).into_raw();
            out.iter_mut().for_each(|v| *v = sanitize(*v));
            out
        };
        Pixels {
            width,
            height,
            channels,
            depth: self.depth,
            data,
        }
    }
}

/// Pixel formats of caller-owned buffers (C ABI). 16-bit samples are native-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    Rgb8,
    Rgba8,
    Rgb16,
    Rgba16,
    RgbaF32,
}

impl PixelFormat {
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            PixelFormat::Rgb8 => 3,
            PixelFormat::Rgba8 => 4,
            PixelFormat::Rgb16 => 6,
            PixelFormat::Rgba16 => 8,
            PixelFormat::RgbaF32 => 16,
        }
    }

    pub fn channels(self) -> u8 {
        match self {
            PixelFormat::Rgb8 | PixelFormat::Rgb16 => 3,
            PixelFormat::Rgba8 | PixelFormat::Rgba16 | PixelFormat::RgbaF32 => 4,
        }
    }

    fn bytes_per_sample(self) -> usize {
        self.bytes_per_pixel() / usize::from(self.channels())
    }

    fn depth(self) -> BitDepth {
        match self {
            PixelFormat::Rgb8 | PixelFormat::Rgba8 => BitDepth::Eight,
            PixelFormat::Rgb16 | PixelFormat::Rgba16 => BitDepth::Sixteen,
            PixelFormat::RgbaF32 => BitDepth::Float,
        }
    }
}

/// Validates a caller's strided buffer description and returns the bytes one row of
/// pixels occupies. Every product is checked because these numbers come straight from a
/// C caller and a wrapped multiplication would turn into an out-of-bounds access.
fn check_buffer(
    len: usize,
    width: u32,
    height: u32,
    stride: usize,
    format: PixelFormat,
) -> Result<usize> {
    if width == 0 || height == 0 {
        return Err(Error::InvalidArgument(format!(
            "buffer size {width}x{height}: width and height must be at least 1"
        )));
    }
    let bpp = format.bytes_per_pixel();
    let row = usize::try_from(width)
        .ok()
        .and_then(|w| w.checked_mul(bpp))
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "width = {width}: a row of {format:?} pixels overflows"
            ))
        })?;
    if stride < row {
        return Err(Error::InvalidArgument(format!(
            "stride = {stride} bytes is smaller than width * bytes per pixel = {width} * {bpp} = {row}"
        )));
    }
    let needed = usize::try_from(height - 1)
        .ok()
        .and_then(|h| h.checked_mul(stride))
        .and_then(|n| n.checked_add(row))
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "height = {height} with stride = {stride}: buffer size overflows"
            ))
        })?;
    if len < needed {
        return Err(Error::InvalidArgument(format!(
            "buffer length = {len} bytes is too short: {width}x{height} {format:?} with stride {stride} needs {needed}"
        )));
    }
    Ok(row)
}

/// Reads a caller's strided buffer into the working form.
///
/// Float input is clamped to [0, 1] (NaN to 0) because the working form promises that
/// range to everything downstream.
pub fn pixels_from_buffer(
    data: &[u8],
    width: u32,
    height: u32,
    stride: usize,
    format: PixelFormat,
) -> Result<Pixels> {
    let row_bytes = check_buffer(data.len(), width, height, stride, format)?;
    let mut p = Pixels::new(width, height, format.channels(), format.depth())?;
    let bps = format.bytes_per_sample();
    let row_samples = row_bytes / bps;
    for (src_row, dst_row) in data
        .chunks(stride)
        .zip(p.data.chunks_exact_mut(row_samples))
    {
        let samples = src_row[..row_bytes].chunks_exact(bps);
        match format {
            PixelFormat::Rgb8 | PixelFormat::Rgba8 => {
                for (d, s) in dst_row.iter_mut().zip(samples) {
                    *d = from_u8(s[0]);
                }
            }
            PixelFormat::Rgb16 | PixelFormat::Rgba16 => {
                for (d, s) in dst_row.iter_mut().zip(samples) {
                    *d = from_u16(u16::from_ne_bytes([s[0], s[1]]));
                }
            }
            PixelFormat::RgbaF32 => {
                for (d, s) in dst_row.iter_mut().zip(samples) {
                    *d = sanitize(f32::from_ne_bytes([s[0], s[1], s[2], s[3]]));
                }
            }
        }
    }
    Ok(p)
}

/// Writes `p` into a caller's strided buffer of the given format.
///
/// Padding bytes past each row's pixels are left untouched because callers often hand
/// in a view into a larger surface. A missing alpha channel is written as opaque; an
/// alpha channel the format cannot hold is dropped.
pub fn pixels_to_buffer(
    p: &Pixels,
    data: &mut [u8],
    width: u32,
    height: u32,
    stride: usize,
    format: PixelFormat,
) -> Result<()> {
    let row_bytes = check_buffer(data.len(), width, height, stride, format)?;
    if width != p.width || height != p.height {
        return Err(Error::InvalidArgument(format!(
            "buffer is {width}x{height} but the image is {}x{}",
            p.width, p.height
        )));
    }
    let src_ch = usize::from(p.channels);
    let dst_ch = usize::from(format.channels());
    let bps = format.bytes_per_sample();
    let bpp = format.bytes_per_pixel();
    let src_row_len = p.width as usize * src_ch;
    for (dst_row, src_row) in data
        .chunks_mut(stride)
        .zip(p.data.chunks_exact(src_row_len))
    {
        for (dst_px, src_px) in dst_row[..row_bytes]
            .chunks_exact_mut(bpp)
            .zip(src_row.chunks_exact(src_ch))
        {
            for (c, dst) in dst_px.chunks_exact_mut(bps).enumerate().take(dst_ch) {
                let v = src_px.get(c).copied().unwrap_or(1.0);
                match format {
                    PixelFormat::Rgb8 | PixelFormat::Rgba8 => dst[0] = to_u8(v),
                    PixelFormat::Rgb16 | PixelFormat::Rgba16 => {
                        dst.copy_from_slice(&to_u16(v).to_ne_bytes())
                    }
                    PixelFormat::RgbaF32 => dst.copy_from_slice(&v.to_ne_bytes()),
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [PixelFormat; 5] = [
        PixelFormat::Rgb8,
        PixelFormat::Rgba8,
        PixelFormat::Rgb16,
        PixelFormat::Rgba16,
        PixelFormat::RgbaF32,
    ];

    fn pattern(width: u32, height: u32, channels: u8, depth: BitDepth) -> Pixels {
        let mut p = Pixels::new(width, height, channels, depth).unwrap();
        for (i, v) in p.data.iter_mut().enumerate() {
            let q = (i * 37 % 256) as u8;
            *v = match depth {
                BitDepth::Eight => from_u8(q),
                BitDepth::Sixteen => from_u16((i * 7919 % 65536) as u16),
                BitDepth::Float => (i % 1000) as f32 / 999.0,
            };
        }
        p
    }

    #[test]
    fn new_checks_sizes() {
        let p = Pixels::new(3, 2, 4, BitDepth::Eight).unwrap();
        assert_eq!(p.data.len(), 24);
        assert!(p.has_alpha());
        assert!(matches!(
            Pixels::new(0, 2, 3, BitDepth::Eight),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            Pixels::new(2, 0, 3, BitDepth::Eight),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            Pixels::new(2, 2, 2, BitDepth::Eight),
            Err(Error::InvalidArgument(_))
        ));
        if usize::BITS == 32 {
            assert!(Pixels::new(u32::MAX, u32::MAX, 4, BitDepth::Eight).is_err());
        }
        assert_eq!(sample_count(u32::MAX, u32::MAX, 4), None);
    }

    fn invalid(r: Result<Pixels>) -> String {
        match r {
            Err(Error::InvalidArgument(m)) => m,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn from_data_enforces_the_shape() {
        // Mismatched lengths: one short, one long, empty; the message names both counts.
        for len in [23, 25, 0] {
            let m = invalid(Pixels::from_data(3, 2, 4, BitDepth::Eight, vec![0.5; len]));
            assert!(m.contains(&format!("holds {len} samples")), "{m}");
            assert!(m.contains("= 24"), "{m}");
        }
        // An RGB-sized buffer is not an RGBA image.
        invalid(Pixels::from_data(2, 2, 4, BitDepth::Eight, vec![0.0; 12]));
        for channels in [0, 1, 2, 5, 255] {
            let n = 4 * usize::from(channels);
            let m = invalid(Pixels::from_data(
                2,
                2,
                channels,
                BitDepth::Eight,
                vec![0.0; n],
            ));
            assert!(m.contains(&format!("channels = {channels}")), "{m}");
        }
        for (w, h) in [(0, 2), (2, 0), (0, 0)] {
            let m = invalid(Pixels::from_data(w, h, 3, BitDepth::Float, vec![]));
            assert!(m.contains("at least 1"), "{m}");
        }
        if usize::BITS == 32 {
            invalid(Pixels::from_data(
                u32::MAX,
                u32::MAX,
                4,
                BitDepth::Eight,
                vec![],
            ));
        }
    }

    #[test]
    fn accessors_round_trip() {
        let data: Vec<f32> = (0..24).map(|i| i as f32 / 23.0).collect();
        let mut p = Pixels::from_data(3, 2, 4, BitDepth::Sixteen, data.clone()).unwrap();
        assert_eq!(
            (p.width(), p.height(), p.channels(), p.depth()),
            (3, 2, 4, BitDepth::Sixteen)
        );
        assert!(p.has_alpha());
        assert_eq!(p.data(), data.as_slice());
        // Pixel (2, 1), channel 1: row 1 starts at sample 3 * 4.
        assert_eq!(p.get(2, 1, 1), data[12 + 2 * 4 + 1]);
        p.data_mut()[5] = 0.25;
        p.set_depth(BitDepth::Float);
        assert_eq!(p.depth(), BitDepth::Float);
        let q = p.try_clone().unwrap();
        assert_eq!(q, p);
        let back = p.into_data();
        assert_eq!(back.len(), 24);
        assert_eq!(back[5], 0.25);
        assert_eq!(back[..5], data[..5]);
        // A zeroed image and `from_data` with zeros are the same image.
        let rgb = Pixels::new(2, 3, 3, BitDepth::Eight).unwrap();
        assert_eq!(
            Pixels::from_data(2, 3, 3, BitDepth::Eight, vec![0.0; 18]).unwrap(),
            rgb
        );
        assert!(!rgb.has_alpha());
    }

    #[test]
    fn from_data_clamps_samples_into_range() {
        let p =
            Pixels::from_data(1, 1, 4, BitDepth::Float, vec![f32::NAN, 2.0, -1.0, 0.5]).unwrap();
        assert_eq!(p.data(), [0.0, 1.0, 0.0, 0.5]);
        let p = Pixels::from_data(
            1,
            1,
            3,
            BitDepth::Float,
            vec![f32::INFINITY, f32::NEG_INFINITY, 1.0],
        )
        .unwrap();
        assert_eq!(p.data(), [1.0, 0.0, 1.0]);
    }

    #[test]
    fn quantisation_matches_reference() {
        // Every 8-bit value survives in -> network range -> out unchanged.
        for q in 0..=255u8 {
            let v = from_u8(q);
            let y = v * 2.0 - 1.0;
            let mut p = Pixels::new(1, 1, 3, BitDepth::Eight).unwrap();
            p.set_rgb_from_planar(&[y, y, y]);
            assert_eq!(to_u8(p.data[0]), q);
            // Same as torchvision's (x - 0.5) / 0.5.
            assert_eq!(y, (v - 0.5) / 0.5);
        }
        // round((y + 1) * 127.5) parity on a sweep of network outputs.
        for i in 0..=20000 {
            let y = -1.0 + i as f32 / 10000.0;
            let v = ((y + 1.0) / 2.0).clamp(0.0, 1.0);
            let reference = ((y + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8;
            assert_eq!(to_u8(v), reference, "y = {y}");
        }
        assert_eq!(to_u8(f32::NAN), 0);
        assert_eq!(to_u8(2.0), 255);
        assert_eq!(to_u8(-1.0), 0);
        for q in [0u16, 1, 255, 256, 32767, 65534, 65535] {
            assert_eq!(to_u16(from_u16(q)), q);
        }
    }

    #[test]
    fn planar_round_trip_keeps_alpha() {
        let p = pattern(5, 3, 4, BitDepth::Eight);
        let planar = p.to_planar_rgb();
        assert_eq!(planar.len(), 45);
        // Pixel (1, 2) channel G lives at plane 1, index 2 * 5 + 1.
        assert_eq!(planar[15 + 11], p.get(1, 2, 1) * 2.0 - 1.0);
        let mut q = p.clone();
        q.data.iter_mut().enumerate().for_each(|(i, v)| {
            if i % 4 != 3 {
                *v = 0.5
            }
        });
        q.set_rgb_from_planar(&planar);
        // Floats may differ in the last bit; what must survive is the 8-bit value.
        let quantised = |p: &Pixels| p.data.iter().map(|&v| to_u8(v)).collect::<Vec<_>>();
        assert_eq!(quantised(&q), quantised(&p));
        assert!(q
            .data
            .iter()
            .zip(&p.data)
            .all(|(a, b)| (a - b).abs() < 1e-6));
        // Out-of-range and NaN network output is clamped, alpha untouched.
        let mut r = Pixels::new(1, 1, 4, BitDepth::Eight).unwrap();
        r.data[3] = 0.25;
        r.set_rgb_from_planar(&[3.0, -3.0, f32::NAN]);
        assert_eq!(r.data, vec![1.0, 0.0, 0.0, 0.25]);
        // Wrong lengths never panic.
        r.set_rgb_from_planar(&[]);
        r.set_rgb_from_planar(&[0.0; 100]);
    }

    #[test]
    fn resize_changes_size_and_stays_in_range() {
        for ch in [3, 4] {
            let p = pattern(40, 30, ch, BitDepth::Float);
            for (w, h) in [(20, 15), (80, 60), (40, 30), (1, 1), (0, 7)] {
                let r = p.resized(w, h);
                assert_eq!((r.width, r.height), (w.max(1), h.max(1)));
                assert_eq!(r.channels, ch);
                assert_eq!(r.depth, BitDepth::Float);
                assert_eq!(
                    Some(r.data().len()),
                    sample_count(r.width(), r.height(), ch)
                );
                assert!(r.data.iter().all(|v| (0.0..=1.0).contains(v)));
            }
        }
        // A flat image stays flat (no ringing), including through premultiplied alpha.
        let mut flat = Pixels::new(16, 16, 4, BitDepth::Eight).unwrap();
        for px in flat.data.chunks_exact_mut(4) {
            px.copy_from_slice(&[0.2, 0.4, 0.6, 0.5]);
        }
        for (w, h) in [(7, 9), (33, 40)] {
            let r = flat.resized(w, h);
            for px in r.data.chunks_exact(4) {
                for (a, b) in px.iter().zip([0.2, 0.4, 0.6, 0.5]) {
                    assert!((a - b).abs() < 1e-4, "{px:?}");
                }
            }
        }
        // Transparent pixels' colour must not bleed into opaque neighbours.
        let mut edge = Pixels::new(8, 8, 4, BitDepth::Eight).unwrap();
        for (i, px) in edge.data.chunks_exact_mut(4).enumerate() {
            if i % 8 < 4 {
                px.copy_from_slice(&[1.0, 0.0, 0.0, 0.0]);
            } else {
                px.copy_from_slice(&[0.0, 0.0, 1.0, 1.0]);
            }
        }
        let r = edge.resized(4, 4);
        for px in r.data.chunks_exact(4) {
            if px[3] > 0.01 {
                assert!(px[0] < 0.01 && px[2] > 0.99, "{px:?}");
            }
        }
    }

    #[test]
    fn buffer_round_trip_every_format_keeps_padding() {
        let (w, h) = (7u32, 5u32);
        for format in ALL {
            let bpp = format.bytes_per_pixel();
            let stride = w as usize * bpp + 5;
            let len = stride * (h as usize - 1) + w as usize * bpp; // no padding after the last row
                                                                    // Arbitrary bytes everywhere (padding included), then valid samples per row.
            let mut src: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            if format == PixelFormat::RgbaF32 {
                for y in 0..h as usize {
                    for s in 0..w as usize * 4 {
                        let v = ((y * 97 + s) as f32 * 0.013) % 1.0;
                        let at = y * stride + s * 4;
                        src[at..at + 4].copy_from_slice(&v.to_ne_bytes());
                    }
                }
            }
            let p = pixels_from_buffer(&src, w, h, stride, format).unwrap();
            assert_eq!(p.channels, format.channels());
            assert_eq!(p.depth, format.depth());
            assert!(p.data.iter().all(|v| (0.0..=1.0).contains(v)), "{format:?}");
            let mut dst = vec![0xAAu8; len];
            pixels_to_buffer(&p, &mut dst, w, h, stride, format).unwrap();
            for y in 0..h as usize {
                let row = &dst[y * stride..];
                let srow = &src[y * stride..];
                let n = w as usize * bpp;
                assert_eq!(&row[..n], &srow[..n], "{format:?} row {y}");
                if y + 1 < h as usize {
                    assert!(row[n..stride].iter().all(|&b| b == 0xAA), "padding touched");
                }
            }
        }
    }

    #[test]
    fn buffer_reads_native_endian_and_converts_channels() {
        let v: u16 = 0x1234;
        let mut bytes = Vec::new();
        for _ in 0..3 {
            bytes.extend_from_slice(&v.to_ne_bytes());
        }
        let p = pixels_from_buffer(&bytes, 1, 1, 6, PixelFormat::Rgb16).unwrap();
        assert_eq!(p.data[0], from_u16(0x1234));
        // RGB image into an RGBA buffer: opaque alpha. RGBA into RGB: alpha dropped.
        let mut out = [0u8; 4];
        pixels_to_buffer(&p, &mut out, 1, 1, 4, PixelFormat::Rgba8).unwrap();
        assert_eq!(out[3], 255);
        let rgba = pixels_from_buffer(&[10, 20, 30, 40], 1, 1, 4, PixelFormat::Rgba8).unwrap();
        let mut out3 = [0u8; 3];
        pixels_to_buffer(&rgba, &mut out3, 1, 1, 3, PixelFormat::Rgb8).unwrap();
        assert_eq!(out3, [10, 20, 30]);
        // Float input is clamped and NaN removed.
        let mut f = Vec::new();
        for x in [f32::NAN, 2.0, -1.0, 0.5] {
            f.extend_from_slice(&x.to_ne_bytes());
        }
        let p = pixels_from_buffer(&f, 1, 1, 16, PixelFormat::RgbaF32).unwrap();
        assert_eq!(p.data, vec![0.0, 1.0, 0.0, 0.5]);
    }

    #[test]
    fn buffer_arguments_are_checked() {
        let buf = vec![0u8; 100];
        let msg = |r: Result<Pixels>| match r {
            Err(Error::InvalidArgument(m)) => m,
            other => panic!("expected InvalidArgument, got {other:?}"),
        };
        assert!(msg(pixels_from_buffer(&buf, 4, 2, 11, PixelFormat::Rgb8)).contains("stride = 11"));
        assert!(msg(pixels_from_buffer(&buf, 4, 9, 12, PixelFormat::Rgb8))
            .contains("buffer length = 100"));
        assert!(msg(pixels_from_buffer(&buf, 0, 2, 12, PixelFormat::Rgb8)).contains("width"));
        assert!(msg(pixels_from_buffer(&buf, 2, 0, 12, PixelFormat::Rgb8)).contains("height"));
        // Exactly enough: no padding after the last row.
        assert!(pixels_from_buffer(&buf[..3 * 12 + 12], 4, 4, 12, PixelFormat::Rgb8).is_ok());
        // Overflowing arithmetic is an error, not a wrap.
        assert!(pixels_from_buffer(&buf, u32::MAX, 2, usize::MAX, PixelFormat::RgbaF32).is_err());
        assert!(pixels_from_buffer(&buf, 1, u32::MAX, usize::MAX / 2, PixelFormat::Rgb8).is_err());

        let p = Pixels::new(4, 2, 3, BitDepth::Eight).unwrap();
        let mut out = vec![0u8; 100];
        assert!(pixels_to_buffer(&p, &mut out, 4, 3, 12, PixelFormat::Rgb8).is_err());
        assert!(pixels_to_buffer(&p, &mut out, 4, 2, 11, PixelFormat::Rgb8).is_err());
        assert!(pixels_to_buffer(&p, &mut out[..20], 4, 2, 12, PixelFormat::Rgb8).is_err());
        assert!(pixels_to_buffer(&p, &mut out, 4, 2, 12, PixelFormat::Rgb8).is_ok());
    }
}
