//! `cg_image`: a caller-owned pixel buffer described by pointer, size, stride and format, and
//! its safe conversion into and out of the engine's [`Pixels`].

use crate::error::{Error, Result};
use crate::pixels::{pixels_from_buffer, pixels_to_buffer, PixelFormat, Pixels};

/// Layout of the pixels of a `cg_image`: one of the `CG_PIXEL_FORMAT_*` values. Channels are
/// interleaved in the order named; alpha is straight (not premultiplied). 16-bit and float
/// samples are in the machine's native byte order.
pub type cg_pixel_format = u32;

/// 8-bit R, G, B: 3 bytes per pixel.
pub const CG_PIXEL_FORMAT_RGB8: cg_pixel_format = 0;
/// 8-bit R, G, B, A: 4 bytes per pixel.
pub const CG_PIXEL_FORMAT_RGBA8: cg_pixel_format = 1;
/// 16-bit R, G, B (`uint16_t`, 0..65535): 6 bytes per pixel.
pub const CG_PIXEL_FORMAT_RGB16: cg_pixel_format = 2;
/// 16-bit R, G, B, A (`uint16_t`, 0..65535): 8 bytes per pixel.
pub const CG_PIXEL_FORMAT_RGBA16: cg_pixel_format = 3;
/// 32-bit float R, G, B, A in 0..1: 16 bytes per pixel. Input values outside 0..1 are
/// clamped and NaN reads as 0.
pub const CG_PIXEL_FORMAT_RGBA_F32: cg_pixel_format = 4;

/// A pixel buffer owned by the caller. The library never keeps a `cg_image` or its `data`
/// after the call it was passed to returns.
///
/// Row `y` starts at `data + y * stride`; a row holds `width` pixels of `format`, and bytes
/// between the end of a row's pixels and the next row (padding) are never read or written.
/// `data` must point to at least `(height - 1) * stride + width * bytes_per_pixel` bytes; it
/// need not be aligned.
#[repr(C)]
pub struct cg_image {
    /// First byte of the first row.
    pub data: *mut u8,
    /// Pixels per row, at least 1.
    pub width: u32,
    /// Rows, at least 1.
    pub height: u32,
    /// Bytes from the start of one row to the start of the next, at least
    /// `width * bytes_per_pixel`.
    pub stride: usize,
    /// One of the `CG_PIXEL_FORMAT_*` values.
    pub format: cg_pixel_format,
}

fn format_from(f: cg_pixel_format) -> Result<PixelFormat> {
    Ok(match f {
        CG_PIXEL_FORMAT_RGB8 => PixelFormat::Rgb8,
        CG_PIXEL_FORMAT_RGBA8 => PixelFormat::Rgba8,
        CG_PIXEL_FORMAT_RGB16 => PixelFormat::Rgb16,
        CG_PIXEL_FORMAT_RGBA16 => PixelFormat::Rgba16,
        CG_PIXEL_FORMAT_RGBA_F32 => PixelFormat::RgbaF32,
        _ => {
            return Err(Error::InvalidArgument(format!(
                "pixel format {f} is not one of the CG_PIXEL_FORMAT_* values"
            )))
        }
    })
}

/// A validated view of a `cg_image`: the format is known and the byte span it covers is
/// computed with checked arithmetic, so a slice over it cannot be built from a wrapped size.
pub(crate) struct ImageView {
    data: *mut u8,
    len: usize,
    width: u32,
    height: u32,
    stride: usize,
    format: PixelFormat,
}

impl ImageView {
    /// Checks `img`'s fields; `what` names it in error messages ("src", "dst").
    pub(crate) fn new(img: &cg_image, what: &str) -> Result<Self> {
        let bad = |msg: String| Error::InvalidArgument(format!("{what}: {msg}"));
        // Keep the inner message only: "invalid argument: src: invalid argument: ..." otherwise.
        let format = format_from(img.format).map_err(|e| match e {
            Error::InvalidArgument(m) => bad(m),
            other => other,
        })?;
        if img.data.is_null() {
            return Err(bad("data is NULL".into()));
        }
        if img.width == 0 || img.height == 0 {
            return Err(bad(format!(
                "size {}x{} is empty: width and height must be at least 1",
                img.width, img.height
            )));
        }
        let row = usize::try_from(img.width)
            .ok()
            .and_then(|w| w.checked_mul(format.bytes_per_pixel()))
            .ok_or_else(|| bad(format!("a row of width {} overflows", img.width)))?;
        if img.stride < row {
            return Err(bad(format!(
                "stride {} is smaller than width * bytes per pixel = {row}",
                img.stride
            )));
        }
        let len = usize::try_from(img.height - 1)
            .ok()
            .and_then(|h| h.checked_mul(img.stride))
            .and_then(|n| n.checked_add(row))
            .filter(|&n| n <= isize::MAX as usize)
            .ok_or_else(|| {
                bad(format!(
                    "height {} with stride {} spans more bytes than memory holds",
                    img.height, img.stride
                ))
            })?;
        Ok(Self {
            data: img.data,
            len,
            width: img.width,
            height: img.height,
            stride: img.stride,
            format,
        })
    }

    pub(crate) fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// Copies the pixels into the engine's working form.
    ///
    /// # Safety
    /// `data` must be readable for `len` bytes and not written during the call.
    pub(crate) unsafe fn read(&self) -> Result<Pixels> {
        // SAFETY: `len` was computed with checked arithmetic and is at most isize::MAX; the
        // caller guarantees the span is readable and not mutated while this slice lives
        // (it is dropped before any write through another view).
        let bytes = unsafe { std::slice::from_raw_parts(self.data.cast_const(), self.len) };
        pixels_from_buffer(bytes, self.width, self.height, self.stride, self.format)
    }

    /// Writes `p` into the buffer, leaving padding bytes alone.
    ///
    /// # Safety
    /// `data` must be writable for `len` bytes, with no other reference to it alive.
    pub(crate) unsafe fn write(&self, p: &Pixels) -> Result<()> {
        // SAFETY: as in `read`, and the caller guarantees exclusive access for this call.
        let bytes = unsafe { std::slice::from_raw_parts_mut(self.data, self.len) };
        pixels_to_buffer(p, bytes, self.width, self.height, self.stride, self.format)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(data: &mut [u8], w: u32, h: u32, stride: usize, format: cg_pixel_format) -> cg_image {
        cg_image {
            data: data.as_mut_ptr(),
            width: w,
            height: h,
            stride,
            format,
        }
    }

    #[test]
    fn views_check_every_field() {
        let mut buf = vec![0u8; 64];
        let ok = |i: &cg_image| ImageView::new(i, "src").map(|v| v.len);
        assert_eq!(
            ok(&img(&mut buf, 2, 3, 10, CG_PIXEL_FORMAT_RGBA8)).unwrap(),
            28
        );
        let err = |i: &cg_image| ImageView::new(i, "src").err().unwrap().to_string();
        assert!(err(&img(&mut buf, 2, 3, 7, CG_PIXEL_FORMAT_RGBA8)).contains("stride 7"));
        assert!(err(&img(&mut buf, 0, 3, 8, CG_PIXEL_FORMAT_RGBA8)).contains("empty"));
        assert!(err(&img(&mut buf, 2, 3, 8, 99)).contains("pixel format 99"));
        assert!(err(&img(&mut buf, 1, u32::MAX, usize::MAX / 2, 0)).contains("spans"));
        let mut null = img(&mut buf, 1, 1, 3, 0);
        null.data = std::ptr::null_mut();
        assert!(err(&null).contains("NULL"));
    }
}
