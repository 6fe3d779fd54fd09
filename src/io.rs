//! Image files in and out.
//!
//! Decoding is hardened for untrusted input: the format comes from the content, the
//! declared size is checked against [`DecodeLimits`] before any pixel buffer exists, and
//! a panic inside a third-party decoder is turned into an error instead of taking the
//! host process (or a C caller) down. Writing is atomic so that a crash or a full disk
//! never leaves a half-written picture where the user expects a finished one.

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::{self, Cursor, Write};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use ::image::codecs::jpeg::JpegEncoder;
use ::image::codecs::png::PngEncoder;
use ::image::codecs::tiff::TiffEncoder;
use ::image::codecs::webp::WebPEncoder;
use ::image::metadata::Orientation;
use ::image::{
    DynamicImage, ImageBuffer, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits,
};

use crate::error::{reserve, Error, Result};
use crate::pixels::{from_u16, from_u8, sample_count, sanitize, to_u16, to_u8, BitDepth, Pixels};

/// Human-readable list used in every "unsupported" message so users learn what works.
const SUPPORTED_READ: &str = "PNG, JPEG, TIFF and WebP";
const SUPPORTED_WRITE: &str = ".png, .jpg/.jpeg, .tif/.tiff and .webp";
/// JPEG stores 95 as a good balance: visually lossless for paintings, half PNG's size.
pub const JPEG_QUALITY: u8 = 95;

/// Limits that protect against decompression bombs: checked against the header before
/// any pixel buffer is allocated.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Largest accepted `width * height`.
    pub max_pixels: u64,
    /// Largest single buffer decoding may need (the decoder's output or the f32 working
    /// copy, whichever is bigger), and the largest file read into memory.
    pub max_alloc_bytes: u64,
}

impl Default for DecodeLimits {
    /// Generous enough for a 250-megapixel camera photo, small enough that a 40-byte
    /// PNG claiming 100000x100000 pixels is refused.
    fn default() -> Self {
        DecodeLimits {
            max_pixels: 250_000_000,
            max_alloc_bytes: 4 << 30,
        }
    }
}

/// Largest input file of any kind (image, style, checkpoint, `--init`) read into memory: the
/// same as [`DecodeLimits::default`]'s `max_alloc_bytes`, so one limit holds everywhere.
pub const MAX_INPUT_FILE_BYTES: u64 = 4 << 30;

/// Memory that an image's ancillary data (ICC profile, compressed text, EXIF, TIFF tags) may
/// take beyond its pixels. A real ICC profile is under 1 MB; a compressed one that inflates to
/// gigabytes is a bomb, and the decoders drop it (or refuse the file) at this bound.
const ANCILLARY_BYTES: u64 = 64 << 20;

/// What a path names when it is not a regular file, for the message that refuses it.
fn file_kind(ft: fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_char_device() {
            return "a character device";
        }
        if ft.is_block_device() {
            return "a block device";
        }
        if ft.is_fifo() {
            return "a named pipe (FIFO)";
        }
        if ft.is_socket() {
            return "a socket";
        }
    }
    if ft.is_dir() {
        "a folder"
    } else {
        "not a regular file"
    }
}

fn not_regular(path: &Path, ft: fs::FileType) -> Error {
    Error::io(
        path,
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "is {}, not a regular file; give the path of a file",
                file_kind(ft)
            ),
        ),
    )
}

/// Reads a whole input file, refusing anything but a regular file and anything over
/// `max_bytes`.
///
/// Device files (`/dev/zero` reports size 0 and never ends), FIFOs (opening one waits for a
/// writer) and sockets are refused by name from `stat` before they are opened; the file is
/// then opened non-blocking and checked again on the open handle, so swapping the path for a
/// FIFO in between cannot hang the read either. The read itself stops at `max_bytes + 1`
/// bytes whatever the metadata said, and the buffer is allocated fallibly.
pub fn read_input_file(path: &Path, max_bytes: u64) -> Result<Vec<u8>> {
    let meta = fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.file_type().is_file() {
        return Err(not_regular(path, meta.file_type()));
    }
    let mut opts = OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NONBLOCK);
    }
    let file = opts.open(path).map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.file_type().is_file() {
        return Err(not_regular(path, meta.file_type()));
    }
    let too_big = |len: u64| {
        Error::format(
            path,
            format!(
                "file is {len} bytes or more, over the limit of {max_bytes} bytes for an input file"
            ),
        )
    };
    if meta.len() > max_bytes {
        return Err(too_big(meta.len()));
    }
    let mut bytes = Vec::new();
    let hint = usize::try_from(meta.len()).unwrap_or(usize::MAX);
    reserve(&mut bytes, hint, &format!("reading {}", path.display()))?;
    io::Read::read_to_end(
        &mut io::Read::take(file, max_bytes.saturating_add(1)),
        &mut bytes,
    )
    .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Decodes an image file (PNG, JPEG, TIFF or WebP; 8 or 16 bits; gray, gray+alpha, RGB
/// or RGBA) into the working form, with its EXIF orientation applied so that portrait
/// phone photos come out upright. Only regular files are read (see [`read_input_file`]).
pub fn read_image(path: &Path, limits: &DecodeLimits) -> Result<Pixels> {
    let bytes = read_input_file(path, limits.max_alloc_bytes)?;
    decode_guarded(&bytes, limits, Some(path))
}

/// [`read_image`] for data already in memory (the C ABI, network input).
pub fn decode_image(bytes: &[u8], limits: &DecodeLimits) -> Result<Pixels> {
    decode_guarded(bytes, limits, None)
}

fn format_error(path: Option<&Path>, msg: String) -> Error {
    Error::Format {
        path: path.map(Path::to_path_buf),
        msg,
    }
}

/// How messages that are not `Format` errors name the input.
fn describe(path: Option<&Path>) -> String {
    path.map(|p| p.display().to_string())
        .unwrap_or_else(|| "input data".into())
}

fn decode_guarded(bytes: &[u8], limits: &DecodeLimits, path: Option<&Path>) -> Result<Pixels> {
    // The decoders are third-party code fed with untrusted bytes; a bug there must
    // surface as a bad-file error, not as an abort across the C ABI.
    panic::catch_unwind(AssertUnwindSafe(|| decode_inner(bytes, limits, path))).unwrap_or_else(
        |_| {
            Err(format_error(
                path,
                "cannot decode image: the decoder failed on malformed data".into(),
            ))
        },
    )
}

fn is_readable(format: ImageFormat) -> bool {
    matches!(
        format,
        ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Tiff | ImageFormat::WebP
    )
}

fn decode_inner(bytes: &[u8], limits: &DecodeLimits, path: Option<&Path>) -> Result<Pixels> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format_error(path, format!("cannot decode image: {e}")))?;
    match reader.format() {
        Some(f) if is_readable(f) => {}
        Some(f) => {
            return Err(Error::Unsupported(format!(
                "{}: {f:?} images are not supported; supported formats are {SUPPORTED_READ}",
                describe(path)
            )))
        }
        None => {
            // A known extension on unrecognised content is a broken file, not an
            // unsupported one; say so rather than listing formats the user already used.
            let claimed = path
                .and_then(|p| ImageFormat::from_path(p).ok())
                .filter(|f| is_readable(*f));
            return Err(match claimed {
                Some(f) => format_error(
                    path,
                    format!("cannot decode image: the content is not a {f:?} image (no {f:?} signature)"),
                ),
                None => Error::Unsupported(format!(
                    "{}: not a recognised image; supported formats are {SUPPORTED_READ}",
                    describe(path)
                )),
            });
        }
    }

    let format = reader.format().unwrap_or(ImageFormat::Png);
    if format == ImageFormat::Jpeg && !has_jpeg_end(bytes) {
        return Err(format_error(
            path,
            "the JPEG file is truncated (it has no end-of-image marker), so part of the picture \
             is missing; copy or download it again"
                .into(),
        ));
    }
    let mut image_limits = Limits::default();
    // A single row or column can never legitimately exceed the pixel budget.
    let side = Some(u32::try_from(limits.max_pixels).unwrap_or(u32::MAX));
    image_limits.max_image_width = side;
    image_limits.max_image_height = side;

    // The decoders take one memory limit, `max_alloc`, for pixels and ancillary data alike
    // (the png crate decompresses an iCCP or zTXt chunk up to it, the tiff crate reads tag
    // values up to it). Sized for the pixels alone, a 3 MB PNG of 8x8 pixels could inflate
    // a 3 GB ICC profile. So the header is read first under the ancillary bound, and the
    // image is then decoded under its own pixel size plus that bound.
    let mut probe_limits = image_limits.clone();
    probe_limits.max_alloc = Some(limits.max_alloc_bytes.min(ANCILLARY_BYTES));
    let mut probe = ImageReader::with_format(Cursor::new(bytes), format);
    probe.limits(probe_limits);
    let (pw, ph) = probe.into_dimensions().map_err(|e| image_error(e, path))?;
    let pixel_bytes = u64::from(pw)
        .saturating_mul(u64::from(ph))
        .saturating_mul(16);
    image_limits.max_alloc = Some(
        limits
            .max_alloc_bytes
            .min(pixel_bytes.saturating_add(ANCILLARY_BYTES)),
    );
    reader.limits(image_limits);

    let mut decoder = reader.into_decoder().map_err(|e| image_error(e, path))?;

    // The header is all that has been read so far: refuse bombs before allocating.
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(format_error(
            path,
            format!("image declares {w}x{h} pixels; an image needs at least one pixel"),
        ));
    }
    let pixels = u64::from(w) * u64::from(h);
    if pixels > limits.max_pixels {
        return Err(format_error(
            path,
            format!(
                "image declares {w}x{h} pixels, over the limit of {} (raise it with --max-megapixels, or DecodeLimits::max_pixels in the API)",
                limits.max_pixels
            ),
        ));
    }
    let channels: u8 = if decoder.color_type().has_alpha() {
        4
    } else {
        3
    };
    let working = pixels.saturating_mul(u64::from(channels) * 4);
    let needed = decoder.total_bytes().max(working);
    if needed > limits.max_alloc_bytes || sample_count(w, h, channels).is_none() {
        return Err(format_error(
            path,
            format!(
                "image declares {w}x{h} pixels, which needs {needed} bytes to decode, over the limit of {} bytes (raise DecodeLimits::max_alloc_bytes to allow it)",
                limits.max_alloc_bytes
            ),
        ));
    }

    // Broken EXIF must not cost the user the picture: fall back to "as stored".
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    // The decoder allocates its output infallibly: make sure the process can hold it (and
    // the working copy made from it) first, so a huge image is an error, not an abort.
    let mut probe: Vec<u8> = Vec::new();
    reserve(
        &mut probe,
        usize::try_from(decoder.total_bytes().saturating_add(working)).unwrap_or(usize::MAX),
        &format!("decoding a {w}x{h} image"),
    )
    .map_err(|e| with_input(e, path))?;
    drop(probe);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| image_error(e, path))?;
    img.apply_orientation(orientation);
    from_dynamic(img).map_err(|e| with_input(e, path))
}

/// Names the input in an out-of-memory message.
fn with_input(e: Error, path: Option<&Path>) -> Error {
    match e {
        Error::OutOfMemory(m) => Error::OutOfMemory(format!("{}: {m}", describe(path))),
        other => other,
    }
}

/// Whether a JPEG ends with its end-of-image marker (possibly followed by trailing data that
/// some cameras append). The decoder fills a truncated JPEG's missing part with grey and
/// reports success, which would give the user a half-grey painting without a word.
fn has_jpeg_end(bytes: &[u8]) -> bool {
    bytes.windows(2).any(|w| w == [0xFF, 0xD9])
}

/// Maps the image crate's errors onto the crate's, keeping "your file is broken"
/// (`Format`) apart from "this build cannot do that" (`Unsupported`).
fn image_error(e: ImageError, path: Option<&Path>) -> Error {
    match e {
        ImageError::Unsupported(u) => Error::Unsupported(format!(
            "{}: {u}; supported formats are {SUPPORTED_READ}",
            describe(path)
        )),
        ImageError::Limits(l) => format_error(
            path,
            format!("image exceeds the decode limits: {l} (raise them with the max_pixels / max_alloc_bytes decode limits)"),
        ),
        other => format_error(path, format!("cannot decode image: {other}")),
    }
}

/// Gray is replicated into RGB because the network only takes three channels.
fn expand<T: Copy>(raw: &[T], src_ch: usize, f: impl Fn(T) -> f32) -> Result<(u8, Vec<f32>)> {
    let alpha = src_ch == 2 || src_ch == 4;
    let dst_ch = if alpha { 4 } else { 3 };
    let mut out = Vec::new();
    reserve(
        &mut out,
        raw.len() / src_ch * dst_ch,
        "the working copy of the image",
    )?;
    for px in raw.chunks_exact(src_ch) {
        match src_ch {
            1 | 2 => {
                let l = f(px[0]);
                out.extend_from_slice(&[l, l, l]);
            }
            _ => out.extend(px[..3].iter().map(|&s| f(s))),
        }
        if alpha {
            out.push(f(px[src_ch - 1]));
        }
    }
    Ok((dst_ch as u8, out))
}

fn from_dynamic(img: DynamicImage) -> Result<Pixels> {
    let (width, height) = (img.width(), img.height());
    let (depth, expanded) = match img {
        DynamicImage::ImageLuma8(b) => (BitDepth::Eight, expand(b.as_raw(), 1, from_u8)),
        DynamicImage::ImageLumaA8(b) => (BitDepth::Eight, expand(b.as_raw(), 2, from_u8)),
        DynamicImage::ImageRgb8(b) => (BitDepth::Eight, expand(b.as_raw(), 3, from_u8)),
        DynamicImage::ImageRgba8(b) => (BitDepth::Eight, expand(b.as_raw(), 4, from_u8)),
        DynamicImage::ImageLuma16(b) => (BitDepth::Sixteen, expand(b.as_raw(), 1, from_u16)),
        DynamicImage::ImageLumaA16(b) => (BitDepth::Sixteen, expand(b.as_raw(), 2, from_u16)),
        DynamicImage::ImageRgb16(b) => (BitDepth::Sixteen, expand(b.as_raw(), 3, from_u16)),
        DynamicImage::ImageRgba16(b) => (BitDepth::Sixteen, expand(b.as_raw(), 4, from_u16)),
        DynamicImage::ImageRgb32F(b) => (BitDepth::Float, expand(b.as_raw(), 3, sanitize)),
        DynamicImage::ImageRgba32F(b) => (BitDepth::Float, expand(b.as_raw(), 4, sanitize)),
        // Any layout a future image release adds: go through the widest common form.
        other => (
            BitDepth::Float,
            expand(other.to_rgba32f().as_raw(), 4, sanitize),
        ),
    };
    let (channels, data) = expanded?;
    Pixels::from_parts(width, height, channels, depth, data)
}

/// Picks the output format from the extension, because that is what users (and every
/// image viewer) expect the file to contain.
pub fn output_format(path: &Path) -> Result<ImageFormat> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("png") => Ok(ImageFormat::Png),
        Some("jpg" | "jpeg") => Ok(ImageFormat::Jpeg),
        Some("tif" | "tiff") => Ok(ImageFormat::Tiff),
        Some("webp") => Ok(ImageFormat::WebP),
        _ => Err(Error::Unsupported(format!(
            "{}: cannot tell the output format from the extension; use one of {SUPPORTED_WRITE}",
            path.display()
        ))),
    }
}

/// Encodes and writes `p` so that `path` either keeps its old content or gets the
/// complete new file, never a partial one.
pub fn write_image(path: &Path, p: &Pixels) -> Result<()> {
    write_image_with_quality(path, p, JPEG_QUALITY)
}

/// [`write_image`] with the JPEG quality (1..=100) to use if `path` names a JPEG file.
pub fn write_image_with_quality(path: &Path, p: &Pixels, jpeg_quality: u8) -> Result<()> {
    let format = output_format(path)?;
    // Check the destination before spending time on encoding.
    output_dir(path)?;
    let bytes =
        encode_image_with_quality(p, format, jpeg_quality).map_err(|e| e.with_path(path))?;
    write_atomic(path, &bytes)
}

/// The folder `path` will be created in, which must already exist: creating folders
/// silently would turn a typo into a file nobody finds.
fn output_dir(path: &Path) -> Result<(&Path, &std::ffi::OsStr)> {
    let Some(name) = path.file_name() else {
        return Err(Error::InvalidArgument(format!(
            "output path {} has no file name",
            path.display()
        )));
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(Error::io(
            path,
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("output folder {} does not exist", dir.display()),
            ),
        ));
    }
    Ok((dir, name))
}

/// The marker between the target's name and the writer's host and process id in a temporary
/// name: `.NAME.cyclegan-HOST-PID-XXXXXXXX.tmp`. Unmistakably ours, so a later run can
/// recognise (and remove) a temporary that a killed process left behind.
const TEMP_MARKER: &str = ".cyclegan-";

/// A name no concurrent writer (thread or process) is likely to pick; `create_new`
/// catches the rest. It records the writer's host and process id so [`remove_stale_temps`]
/// can tell a dead writer's leftovers from a live writer's work in progress, also when
/// tasks on several hosts share the output folder (see `crate::batch`).
fn temp_name(name: &std::ffi::OsStr) -> OsString {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mix = (nanos as u64)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut s = OsString::from(".");
    s.push(name);
    s.push(format!(
        "{TEMP_MARKER}{}-{:08x}.tmp",
        crate::batch::writer_tag(),
        (mix ^ (mix >> 32)) as u32
    ));
    s
}

/// If `file_name` is a temporary that [`write_atomic`] wrote on this host, the name of the
/// file it was to become and the id of the process that wrote it; `None` for other hosts'.
fn parse_temp_name(file_name: &std::ffi::OsStr) -> Option<(&str, u32)> {
    let rest = file_name
        .to_str()?
        .strip_prefix('.')?
        .strip_suffix(".tmp")?;
    let (target, tail) = rest.rsplit_once(TEMP_MARKER)?;
    let pid = crate::batch::own_host_writer(tail)?;
    if target.is_empty() {
        return None;
    }
    Some((target, pid))
}

/// Whether process `pid` may still be writing. Where the system cannot tell (no `/proc`),
/// only this process counts as alive.
fn writer_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let proc_root = Path::new("/proc");
    proc_root.join("self").exists() && proc_root.join(pid.to_string()).exists()
}

/// Removes the temporaries that an interrupted [`write_atomic`] (a crash, a `kill -9`, a
/// power cut) left in `dir`: only files named like ours (`.NAME.cyclegan-HOST-PID-XXXXXXXX.tmp`),
/// only for targets `NAME` that `is_ours` accepts, only when HOST is this host (another
/// host's live task must keep its file) and process `PID` is gone (on
/// systems without `/proc`, any process but this one), so that a concurrent writer's file in
/// progress is left alone. Returns how many were removed; errors are ignored, since a
/// leftover temporary is harmless clutter.
pub fn remove_stale_temps(dir: &Path, is_ours: impl Fn(&str) -> bool) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some((target, pid)) = parse_temp_name(&name) else {
            continue;
        };
        if !is_ours(target) || writer_alive(pid) {
            continue;
        }
        if entry.file_type().is_ok_and(|t| t.is_file()) && fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Writes any output file (images, weights) so that `path` either keeps its old content
/// or gets all of `bytes`, never a partial file: the data goes to a hidden temporary
/// (`.NAME.cyclegan-HOST-PID-XXXXXXXX.tmp`) in the same folder, is synced, and is renamed over
/// `path`. On error the temporary is removed; one left by a killed process is removed by
/// [`remove_stale_temps`]. The folder must exist.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let (dir, name) = output_dir(path)?;
    let mut last_err = None;
    for _ in 0..16 {
        let tmp: PathBuf = dir.join(temp_name(name));
        let file = match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                last_err = Some(e);
                continue;
            }
            Err(e) => return Err(Error::io(path, e)),
        };
        let result = (|| {
            let mut file = file;
            file.write_all(bytes)?;
            // Data must be on disk before the rename publishes it, or a crash could
            // leave a complete-looking but empty file.
            file.sync_all()?;
            drop(file);
            fs::rename(&tmp, path)
        })();
        return match result {
            Ok(()) => {
                sync_dir(dir);
                Ok(())
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(Error::io(path, e))
            }
        };
    }
    Err(Error::io(
        path,
        last_err.unwrap_or_else(|| io::Error::other("cannot create a temporary file")),
    ))
}

/// Makes the rename itself durable; best effort because not every platform or file
/// system can open or sync a directory, and the file is already complete either way.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Encodes to bytes in memory with the same rules as [`write_image`]: PNG and TIFF keep
/// 16 bits (float input is written as 16-bit, which every viewer reads) and alpha; JPEG
/// is 8-bit RGB; WebP is lossless 8-bit with alpha.
pub fn encode_image(p: &Pixels, format: ImageFormat) -> Result<Vec<u8>> {
    encode_image_with_quality(p, format, JPEG_QUALITY)
}

/// [`encode_image`] with the JPEG quality (1..=100; ignored for other formats).
pub fn encode_image_with_quality(
    p: &Pixels,
    format: ImageFormat,
    jpeg_quality: u8,
) -> Result<Vec<u8>> {
    let max_side = match format {
        ImageFormat::Jpeg => 65_535,
        ImageFormat::WebP => 16_383,
        _ => u32::MAX,
    };
    if p.width() > max_side || p.height() > max_side {
        return Err(Error::Unsupported(format!(
            "{format:?} cannot store a {}x{} image (at most {max_side} pixels a side); use PNG or TIFF",
            p.width(), p.height()
        )));
    }
    let (w, h) = (p.width(), p.height());
    let alpha = p.has_alpha();
    let wide =
        matches!(format, ImageFormat::Png | ImageFormat::Tiff) && p.depth() != BitDepth::Eight;
    let bad = || Error::InvalidArgument("image buffer does not match its size".into());
    let img = if format == ImageFormat::Jpeg {
        let rgb: Vec<u8> = p
            .data()
            .chunks_exact(usize::from(p.channels()))
            .flat_map(|px| px[..3].iter().map(|&v| to_u8(v)))
            .collect();
        DynamicImage::ImageRgb8(ImageBuffer::from_raw(w, h, rgb).ok_or_else(bad)?)
    } else if wide {
        let raw: Vec<u16> = p.data().iter().map(|&v| to_u16(v)).collect();
        if alpha {
            DynamicImage::ImageRgba16(ImageBuffer::from_raw(w, h, raw).ok_or_else(bad)?)
        } else {
            DynamicImage::ImageRgb16(ImageBuffer::from_raw(w, h, raw).ok_or_else(bad)?)
        }
    } else {
        let raw: Vec<u8> = p.data().iter().map(|&v| to_u8(v)).collect();
        if alpha {
            DynamicImage::ImageRgba8(ImageBuffer::from_raw(w, h, raw).ok_or_else(bad)?)
        } else {
            DynamicImage::ImageRgb8(ImageBuffer::from_raw(w, h, raw).ok_or_else(bad)?)
        }
    };
    let mut out = Vec::new();
    let result = match format {
        ImageFormat::Png => img.write_with_encoder(PngEncoder::new(&mut out)),
        ImageFormat::Jpeg => img.write_with_encoder(JpegEncoder::new_with_quality(
            &mut out,
            jpeg_quality.clamp(1, 100),
        )),
        ImageFormat::Tiff => img.write_with_encoder(TiffEncoder::new(Cursor::new(&mut out))),
        ImageFormat::WebP => img.write_with_encoder(WebPEncoder::new_lossless(&mut out)),
        other => {
            return Err(Error::Unsupported(format!(
                "cannot write {other:?} images; use one of {SUPPORTED_WRITE}"
            )))
        }
    };
    result.map_err(|e| match e {
        ImageError::Unsupported(u) => Error::Unsupported(format!("cannot encode {format:?}: {u}")),
        other => Error::format_mem(format!("cannot encode {format:?} image: {other}")),
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch folder removed on drop, so failed tests do not litter /tmp.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static N: AtomicU64 = AtomicU64::new(0);
            let dir = std::env::temp_dir().join(format!(
                "cyclegan-io-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn entries(&self) -> Vec<String> {
            let mut v: Vec<String> = fs::read_dir(&self.0)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Exactly representable samples for `depth`, varied enough to catch channel mix-ups.
    fn pattern(w: u32, h: u32, channels: u8, depth: BitDepth) -> Pixels {
        let mut p = Pixels::new(w, h, channels, depth).unwrap();
        for (i, v) in p.data_mut().iter_mut().enumerate() {
            *v = match depth {
                BitDepth::Eight => from_u8((i * 37 % 256) as u8),
                _ => from_u16((i * 7919 % 65536) as u16),
            };
        }
        p
    }

    /// A smooth picture that lossy codecs reproduce closely.
    fn smooth(w: u32, h: u32) -> Pixels {
        let mut p = Pixels::new(w, h, 3, BitDepth::Eight).unwrap();
        for y in 0..h {
            for x in 0..w {
                let i = ((y * w + x) * 3) as usize;
                p.data_mut()[i] = from_u8((x * 255 / w) as u8);
                p.data_mut()[i + 1] = from_u8((y * 255 / h) as u8);
                p.data_mut()[i + 2] = from_u8(128);
            }
        }
        p
    }

    fn limits() -> DecodeLimits {
        DecodeLimits::default()
    }

    fn format_msg(e: Error) -> String {
        match e {
            Error::Format { msg, .. } => msg,
            other => panic!("expected a Format error, got {other:?}"),
        }
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }

    /// A PNG with a header declaring `w`x`h` RGB pixels and a token (empty) IDAT: what a
    /// decompression bomb looks like up to the point where a decoder would allocate.
    fn png_header_only(w: u32, h: u32) -> Vec<u8> {
        let mut out = vec![137, 80, 78, 71, 13, 10, 26, 10];
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&w.to_be_bytes());
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        png_chunk(&mut out, b"IHDR", &ihdr);
        png_chunk(
            &mut out,
            b"IDAT",
            &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
        );
        png_chunk(&mut out, b"IEND", &[]);
        out
    }

    fn max_abs_diff(a: &Pixels, b: &Pixels) -> f32 {
        a.data()
            .iter()
            .zip(b.data())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn png_8bit_round_trip_is_exact() {
        for ch in [3, 4] {
            let p = pattern(13, 7, ch, BitDepth::Eight);
            let bytes = encode_image(&p, ImageFormat::Png).unwrap();
            assert_eq!(decode_image(&bytes, &limits()).unwrap(), p);
        }
    }

    #[test]
    fn png_16bit_round_trip_is_exact() {
        for ch in [3, 4] {
            let p = pattern(11, 9, ch, BitDepth::Sixteen);
            let bytes = encode_image(&p, ImageFormat::Png).unwrap();
            assert_eq!(decode_image(&bytes, &limits()).unwrap(), p);
        }
    }

    #[test]
    fn float_depth_is_written_as_16bit() {
        let mut p = pattern(6, 5, 4, BitDepth::Float);
        p.data_mut()
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = (i as f32 * 0.0123) % 1.0);
        for format in [ImageFormat::Png, ImageFormat::Tiff] {
            let q = decode_image(&encode_image(&p, format).unwrap(), &limits()).unwrap();
            assert_eq!(q.depth(), BitDepth::Sixteen);
            assert_eq!(q.channels(), 4);
            assert!(max_abs_diff(&p, &q) <= 0.5 / 65535.0 + 1e-7);
        }
    }

    #[test]
    fn tiff_round_trips_exactly() {
        for (ch, depth) in [
            (3, BitDepth::Sixteen),
            (4, BitDepth::Sixteen),
            (3, BitDepth::Eight),
            (4, BitDepth::Eight),
        ] {
            let p = pattern(10, 4, ch, depth);
            let bytes = encode_image(&p, ImageFormat::Tiff).unwrap();
            assert!(&bytes[..2] == b"II" || &bytes[..2] == b"MM");
            assert_eq!(
                decode_image(&bytes, &limits()).unwrap(),
                p,
                "{ch} {depth:?}"
            );
        }
    }

    #[test]
    fn jpeg_is_close_and_drops_alpha() {
        let p = smooth(64, 48);
        let q = decode_image(&encode_image(&p, ImageFormat::Jpeg).unwrap(), &limits()).unwrap();
        assert_eq!(
            (q.width(), q.height(), q.channels(), q.depth()),
            (64, 48, 3, BitDepth::Eight)
        );
        let mean = p
            .data()
            .iter()
            .zip(q.data())
            .map(|(a, b)| (a - b).abs())
            .sum::<f32>()
            / p.data().len() as f32;
        assert!(mean < 2.0 / 255.0, "mean error {mean}");

        let mut rgba = pattern(8, 8, 4, BitDepth::Sixteen);
        rgba.data_mut().iter_mut().for_each(|v| *v = 0.5);
        let q = decode_image(&encode_image(&rgba, ImageFormat::Jpeg).unwrap(), &limits()).unwrap();
        assert_eq!((q.channels(), q.depth()), (3, BitDepth::Eight));
    }

    #[test]
    fn webp_round_trip_is_lossless_with_alpha() {
        for ch in [3, 4] {
            let p = pattern(17, 5, ch, BitDepth::Eight);
            let bytes = encode_image(&p, ImageFormat::WebP).unwrap();
            assert_eq!(&bytes[..4], b"RIFF");
            assert_eq!(decode_image(&bytes, &limits()).unwrap(), p);
        }
        // 16-bit input is written at 8 bits: the closest 8-bit value comes back.
        let p = pattern(4, 4, 4, BitDepth::Sixteen);
        let q = decode_image(&encode_image(&p, ImageFormat::WebP).unwrap(), &limits()).unwrap();
        assert_eq!(q.depth(), BitDepth::Eight);
        assert!(max_abs_diff(&p, &q) <= 0.5 / 255.0 + 1e-6);
    }

    #[test]
    fn gray_becomes_rgb() {
        let gray =
            ::image::GrayImage::from_fn(3, 2, |x, y| ::image::Luma([(x * 50 + y * 7) as u8]));
        let mut bytes = Vec::new();
        DynamicImage::ImageLuma8(gray)
            .write_with_encoder(PngEncoder::new(&mut bytes))
            .unwrap();
        let p = decode_image(&bytes, &limits()).unwrap();
        assert_eq!((p.channels(), p.depth()), (3, BitDepth::Eight));
        assert_eq!(p.get(2, 1, 0), from_u8(107));
        assert_eq!(p.get(2, 1, 1), from_u8(107));
        assert_eq!(p.get(2, 1, 2), from_u8(107));

        let ga = ::image::ImageBuffer::<::image::LumaA<u16>, _>::from_fn(2, 2, |x, _| {
            ::image::LumaA([x as u16 * 1000, 40000])
        });
        let mut bytes = Vec::new();
        DynamicImage::ImageLumaA16(ga)
            .write_with_encoder(PngEncoder::new(&mut bytes))
            .unwrap();
        let p = decode_image(&bytes, &limits()).unwrap();
        assert_eq!((p.channels(), p.depth()), (4, BitDepth::Sixteen));
        assert_eq!(
            &p.data()[4..8],
            &[
                from_u16(1000),
                from_u16(1000),
                from_u16(1000),
                from_u16(40000)
            ]
        );
    }

    /// A JPEG whose top-left 16x16 block is red and the rest blue, tagged with EXIF
    /// orientation 6 ("rotate 90 degrees clockwise to display").
    fn jpeg_with_orientation_6() -> Vec<u8> {
        let mut p = Pixels::new(64, 32, 3, BitDepth::Eight).unwrap();
        for y in 0..32 {
            for x in 0..64 {
                let i = ((y * 64 + x) * 3) as usize;
                let px = if x < 16 && y < 16 {
                    [1.0, 0.0, 0.0]
                } else {
                    [0.0, 0.0, 1.0]
                };
                p.data_mut()[i..i + 3].copy_from_slice(&px);
            }
        }
        let jpeg = encode_image(&p, ImageFormat::Jpeg).unwrap();
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);

        let mut tiff = Vec::new();
        tiff.extend_from_slice(b"MM\x00\x2a");
        tiff.extend_from_slice(&8u32.to_be_bytes()); // first IFD right after the header
        tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
        tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
        tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
        tiff.extend_from_slice(&1u32.to_be_bytes()); // count
        tiff.extend_from_slice(&[0, 6, 0, 0]); // value 6, left-justified
        tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
        let mut app1 = vec![0xFF, 0xE1];
        app1.extend_from_slice(&((2 + 6 + tiff.len()) as u16).to_be_bytes());
        app1.extend_from_slice(b"Exif\0\0");
        app1.extend_from_slice(&tiff);

        let mut out = jpeg[..2].to_vec();
        out.extend_from_slice(&app1);
        out.extend_from_slice(&jpeg[2..]);
        out
    }

    #[test]
    fn exif_orientation_is_applied() {
        let dir = TempDir::new("exif");
        let path = dir.0.join("portrait.jpg");
        fs::write(&path, jpeg_with_orientation_6()).unwrap();
        let p = read_image(&path, &limits()).unwrap();
        assert_eq!(
            (p.width(), p.height()),
            (32, 64),
            "width and height must be swapped"
        );
        // Rotating 90 degrees clockwise moves the top-left corner to the top-right.
        let red = |x, y| p.get(x, y, 0) > 0.8 && p.get(x, y, 2) < 0.2;
        let blue = |x, y| p.get(x, y, 0) < 0.2 && p.get(x, y, 2) > 0.8;
        assert!(red(31 - 4, 4), "top-right should be red");
        assert!(blue(4, 4), "top-left should be blue");
        assert!(blue(4, 60) && blue(27, 60), "bottom should be blue");
    }

    #[test]
    fn decompression_bomb_is_refused_from_the_header() {
        let bomb = png_header_only(100_000, 100_000);
        assert!(bomb.len() < 80);
        let msg = format_msg(decode_image(&bomb, &limits()).unwrap_err());
        assert!(
            msg.contains("100000x100000") && msg.contains("over the limit of 250000000"),
            "{msg}"
        );
        assert!(msg.contains("raise it with"), "{msg}");

        let dir = TempDir::new("bomb");
        let path = dir.0.join("bomb.png");
        fs::write(&path, &bomb).unwrap();
        let e = read_image(&path, &limits()).unwrap_err();
        assert!(e.to_string().contains("bomb.png"), "{e}");
        assert!(e.to_string().contains("100000x100000"), "{e}");

        // Within the pixel budget but over the allocation budget.
        let p = pattern(100, 100, 3, BitDepth::Eight);
        let bytes = encode_image(&p, ImageFormat::Png).unwrap();
        let tight = DecodeLimits {
            max_pixels: 1_000_000,
            max_alloc_bytes: 10_000,
        };
        let msg = format_msg(decode_image(&bytes, &tight).unwrap_err());
        assert!(
            msg.contains("100x100") && msg.contains("10000 bytes"),
            "{msg}"
        );
        // A single side longer than the whole pixel budget is refused as well.
        let narrow = DecodeLimits {
            max_pixels: 50,
            max_alloc_bytes: 1 << 30,
        };
        assert!(matches!(
            decode_image(&bytes, &narrow),
            Err(Error::Format { .. })
        ));
        // The same file read from disk is also refused if it is bigger than the budget.
        fs::write(&path, &bytes).unwrap();
        let tiny = DecodeLimits {
            max_pixels: 1_000_000,
            max_alloc_bytes: 16,
        };
        assert!(matches!(
            read_image(&path, &tiny),
            Err(Error::Format { .. })
        ));
    }

    #[test]
    fn zero_size_header_is_a_format_error() {
        for (w, h) in [(0, 10), (10, 0)] {
            assert!(matches!(
                decode_image(&png_header_only(w, h), &limits()),
                Err(Error::Format { .. })
            ));
        }
    }

    #[test]
    fn truncated_png_is_a_format_error() {
        let p = pattern(32, 32, 3, BitDepth::Eight);
        let bytes = encode_image(&p, ImageFormat::Png).unwrap();
        for cut in [bytes.len() / 2, bytes.len() - 13, 40] {
            let msg = format_msg(decode_image(&bytes[..cut], &limits()).unwrap_err());
            assert!(msg.starts_with("cannot decode image"), "{msg}");
        }
        let dir = TempDir::new("trunc");
        let path = dir.0.join("cut.png");
        fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        match read_image(&path, &limits()).unwrap_err() {
            Error::Format { path: Some(p), msg } => {
                assert_eq!(p, path);
                assert!(msg.contains("cannot decode image"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn truncated_jpeg_is_refused_not_stylized_grey() {
        let jpeg = encode_image(&smooth(64, 48), ImageFormat::Jpeg).unwrap();
        let e = format_msg(decode_image(&jpeg[..jpeg.len() * 2 / 3], &limits()).unwrap_err());
        assert!(e.contains("truncated") && e.contains("end-of-image"), "{e}");
        // Trailing data after the end marker (some cameras append a video) is fine.
        let mut tail = jpeg.clone();
        tail.extend_from_slice(&[7u8; 3000]);
        decode_image(&tail, &limits()).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn only_regular_files_are_read() {
        let e = read_input_file(Path::new("/dev/zero"), 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/dev/zero") && e.contains("character device"),
            "{e}"
        );
        let dir = TempDir::new("regular");
        let e = read_input_file(&dir.0, 1 << 20).unwrap_err().to_string();
        assert!(e.contains("a folder"), "{e}");
        let fifo = dir.0.join("pipe.png");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } == 0 {
            let e = read_image(&fifo, &limits()).unwrap_err().to_string();
            assert!(e.contains("named pipe (FIFO)"), "{e}");
        }
        let big = dir.0.join("big.bin");
        fs::write(&big, vec![1u8; 5000]).unwrap();
        let e = read_input_file(&big, 4999).unwrap_err().to_string();
        assert!(e.contains("over the limit of 4999 bytes"), "{e}");
        assert_eq!(read_input_file(&big, 5000).unwrap().len(), 5000);
    }

    #[test]
    fn missing_file_is_an_io_error_naming_the_path() {
        let path = Path::new("/definitely/not/here/photo.png");
        let e = read_image(path, &limits()).unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e:?}");
        assert!(
            e.to_string().contains("/definitely/not/here/photo.png"),
            "{e}"
        );
        let dir = TempDir::new("isdir");
        assert!(matches!(
            read_image(&dir.0, &limits()),
            Err(Error::Io { .. })
        ));
    }

    #[test]
    fn non_images_are_refused() {
        let dir = TempDir::new("text");
        let path = dir.0.join("notes.png");
        fs::write(&path, "this is not a picture\n").unwrap();
        let e = read_image(&path, &limits()).unwrap_err();
        assert!(matches!(e, Error::Format { .. }), "{e:?}");
        assert!(e.to_string().contains("notes.png"), "{e}");

        let path = dir.0.join("notes.txt");
        fs::write(&path, "this is not a picture\n").unwrap();
        match read_image(&path, &limits()).unwrap_err() {
            Error::Unsupported(m) => {
                assert!(
                    m.contains("notes.txt") && m.contains("PNG, JPEG, TIFF and WebP"),
                    "{m}"
                )
            }
            other => panic!("{other:?}"),
        }
        // A real format this build does not decode.
        match decode_image(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", &limits()).unwrap_err() {
            Error::Unsupported(m) => assert!(m.contains("Gif") && m.contains("supported"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decode_image(&[], &limits()),
            Err(Error::Unsupported(_))
        ));
    }

    #[test]
    fn output_format_from_extension() {
        for (name, f) in [
            ("a.png", ImageFormat::Png),
            ("a.PNG", ImageFormat::Png),
            ("dir/a.jpg", ImageFormat::Jpeg),
            ("a.JpEg", ImageFormat::Jpeg),
            ("a.tif", ImageFormat::Tiff),
            ("a.TIFF", ImageFormat::Tiff),
            ("a.webp", ImageFormat::WebP),
        ] {
            assert_eq!(output_format(Path::new(name)).unwrap(), f, "{name}");
        }
        for name in ["a.gif", "a", "a.png.bak", ".png"] {
            match output_format(Path::new(name)) {
                Err(Error::Unsupported(m)) => assert!(m.contains(".webp"), "{m}"),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn write_and_read_every_format() {
        let dir = TempDir::new("write");
        let p = pattern(9, 6, 4, BitDepth::Sixteen);
        for name in ["out.png", "out.tiff", "out.webp", "out.jpg"] {
            let path = dir.0.join(name);
            write_image(&path, &p).unwrap();
            let q = read_image(&path, &limits()).unwrap();
            assert_eq!((q.width(), q.height()), (9, 6), "{name}");
        }
        assert_eq!(read_image(&dir.0.join("out.png"), &limits()).unwrap(), p);
        assert_eq!(read_image(&dir.0.join("out.tiff"), &limits()).unwrap(), p);
        // Overwriting replaces the file completely.
        let small = pattern(2, 2, 3, BitDepth::Eight);
        write_image(&dir.0.join("out.png"), &small).unwrap();
        assert_eq!(
            read_image(&dir.0.join("out.png"), &limits()).unwrap(),
            small
        );
        assert_eq!(
            dir.entries(),
            ["out.jpg", "out.png", "out.tiff", "out.webp"],
            "temporaries left"
        );
    }

    #[test]
    fn write_into_missing_folder_fails_cleanly() {
        let dir = TempDir::new("nofolder");
        let path = dir.0.join("missing").join("out.png");
        let e = write_image(&path, &pattern(2, 2, 3, BitDepth::Eight)).unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("output folder") && s.contains("missing") && s.contains("does not exist"),
            "{s}"
        );
        assert!(!path.exists());
        assert!(dir.entries().is_empty());
    }

    #[test]
    fn failed_writes_leave_nothing_behind() {
        let dir = TempDir::new("fail");
        // The target is a folder: the final rename fails after the temporary was written.
        let target = dir.0.join("taken.png");
        fs::create_dir(&target).unwrap();
        let e = write_image(&target, &pattern(3, 3, 3, BitDepth::Eight)).unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e:?}");
        assert_eq!(dir.entries(), ["taken.png"], "temporary left behind");
        assert!(target.is_dir());

        // Encoding fails before anything is created: WebP cannot hold 16384 pixels a side.
        let wide = Pixels::new(16_384, 1, 3, BitDepth::Eight).unwrap();
        let path = dir.0.join("wide.webp");
        assert!(matches!(
            write_image(&path, &wide),
            Err(Error::Unsupported(_))
        ));
        // Unknown extension: refused before writing.
        assert!(matches!(
            write_image(&dir.0.join("x.bmp"), &pattern(2, 2, 3, BitDepth::Eight)),
            Err(Error::Unsupported(_))
        ));
        assert_eq!(dir.entries(), ["taken.png"]);
    }

    #[test]
    fn temp_names_are_hidden_and_distinct() {
        let a = temp_name(std::ffi::OsStr::new("pic.png"));
        let b = temp_name(std::ffi::OsStr::new("pic.png"));
        let a = a.to_string_lossy();
        assert!(a.starts_with(".pic.png.") && a.ends_with(".tmp"), "{a}");
        assert_ne!(a, b.to_string_lossy());
        assert_eq!(
            parse_temp_name(std::ffi::OsStr::new(&*a)),
            Some(("pic.png", std::process::id()))
        );
    }

    #[test]
    fn only_dead_writers_temps_for_our_targets_are_removed() {
        let dir = TempDir::new("stale");
        let d = &dir.0;
        // No process has id u32::MAX - 1 (Linux caps ids far below it).
        let dead = u32::MAX - 1;
        let h = crate::batch::writer_tag().rsplit_once('-').unwrap().0; // this host
        let names = [
            format!(".a.png.cyclegan-{h}-{dead}-0123abcd.tmp"), // stale, ours: removed
            format!(".b.png.cyclegan-{h}-{dead}-0123abcd.tmp"), // stale, not asked for: kept
            format!(
                ".a.png.cyclegan-{}-0123abcd.tmp",
                crate::batch::writer_tag()
            ), // live: kept
            ".a.png.0123abcd.tmp".to_string(),                  // not our pattern: kept
            format!(".a.png.cyclegan-{h}-{dead}-0123abcz.tmp"), // not hex: kept
            format!(".a.png.cyclegan-{h}x-{dead}-0123abcd.tmp"), // another host: kept
            format!(".a.png.cyclegan-{dead}-0123abcd.tmp"),     // no host (older): kept
            "a.png".to_string(),
        ];
        for n in &names {
            fs::write(d.join(n), b"x").unwrap();
        }
        assert_eq!(remove_stale_temps(d, |t| t == "a.png"), 1);
        assert!(!d.join(&names[0]).exists());
        for n in &names[1..] {
            assert!(d.join(n).exists(), "{n} was removed");
        }
    }

    #[test]
    fn encode_refuses_what_a_format_cannot_hold() {
        // A `Pixels` is always well formed (its constructors check), so what is left to
        // refuse is a size or a format the encoder cannot write.
        let wide = Pixels::new(16_384, 1, 4, BitDepth::Eight).unwrap();
        assert!(matches!(
            encode_image(&wide, ImageFormat::WebP),
            Err(Error::Unsupported(_))
        ));
        let ok = pattern(2, 2, 3, BitDepth::Eight);
        assert!(matches!(
            encode_image(&ok, ImageFormat::Gif),
            Err(Error::Unsupported(_))
        ));
    }

    #[test]
    fn shipped_examples_decode() {
        let rocket = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/rocket.jpg");
        let p = read_image(&rocket, &limits()).unwrap();
        assert!(p.width() > 0 && p.height() > 0);
        assert_eq!((p.channels(), p.depth()), (3, BitDepth::Eight));
        assert!(p.data().iter().all(|v| (0.0..=1.0).contains(v)));

        let refs =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/models/reference/examples");
        let Ok(entries) = fs::read_dir(&refs) else {
            eprintln!("skipping reference photos: {} not present", refs.display());
            return;
        };
        let mut n = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("png") {
                continue;
            }
            let p = read_image(&path, &limits()).unwrap();
            let again =
                decode_image(&encode_image(&p, ImageFormat::Png).unwrap(), &limits()).unwrap();
            assert_eq!(again, p, "{}", path.display());
            n += 1;
        }
        eprintln!("{n} reference photos round-tripped");
    }

    /// Cheap in-test fuzzing: mutated and truncated files of every format must give
    /// errors (or pictures), never panics or decoder aborts.
    #[test]
    fn mutated_files_never_panic() {
        let p = pattern(24, 16, 4, BitDepth::Eight);
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let small = DecodeLimits {
            max_pixels: 1 << 20,
            max_alloc_bytes: 64 << 20,
        };
        for format in [
            ImageFormat::Png,
            ImageFormat::Jpeg,
            ImageFormat::Tiff,
            ImageFormat::WebP,
        ] {
            let good = encode_image(&p, format).unwrap();
            for i in 0..300 {
                let mut bad = good.clone();
                for _ in 0..1 + i % 8 {
                    let at = (next() as usize) % bad.len();
                    bad[at] = next() as u8;
                }
                if i % 5 == 0 {
                    bad.truncate((next() as usize) % bad.len());
                }
                if let Err(Error::Format { msg, .. }) = decode_image(&bad, &small) {
                    assert!(
                        !msg.contains("decoder failed"),
                        "{format:?} decoder panicked on case {i}"
                    );
                }
            }
        }
    }
}
