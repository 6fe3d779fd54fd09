//! Hostile and careless inputs, one test per class of issue #19, each run in a child process
//! under an address-space limit (`ulimit -v`, i.e. `setrlimit(RLIMIT_AS)`), so that running
//! out of memory aborts the child, which the test sees as a failure, instead of slowing the
//! machine down. Every input is generated here.
//!
//! Two kinds of child: the `cyclegan` CLI, and this very test binary re-run on one test with
//! `CG_RELIABILITY_CHILD` set, which calls the C ABI in-process (the way a host does).
//! `MALLOC_ARENA_MAX=2` keeps glibc from reserving 64 MB of address space per thread, which
//! would make the limits depend on the core count.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::TempDir;

const CLI: &str = env!("CARGO_BIN_EXE_cyclegan");
const CHILD: &str = "CG_RELIABILITY_CHILD";

/// Runs `cmd args` under an address-space limit of `limit_mb` and a wall-clock limit of
/// `seconds`; a run past the clock is killed and fails the test.
fn limited(limit_mb: u64, seconds: u64, cmd: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!("ulimit -v {}; exec \"$0\" \"$@\"", limit_mb * 1024))
        .arg(cmd)
        .args(args)
        .env("MALLOC_ARENA_MAX", "2")
        .env("RAYON_NUM_THREADS", "2")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().expect("start the child");
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > Duration::from_secs(seconds) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{cmd} {args:?} still ran after {seconds} s (hung?); stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// The CLI under a limit: it must exit by itself (status 0 or 1), never by a signal.
fn cli(limit_mb: u64, args: &[&str]) -> (i32, String, String) {
    let out = limited(limit_mb, 60, CLI, args, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let code = out.status.code().unwrap_or_else(|| {
        panic!(
            "cyclegan {args:?} was killed ({:?}) under a {limit_mb} MB limit: {stderr}",
            out.status
        )
    });
    assert!(
        !stderr.contains("panicked") && !stderr.contains("memory allocation of"),
        "cyclegan {args:?}: {stderr}"
    );
    (
        code,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    )
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

// ---------------------------------------------------------------------------------------
// Crafted files

/// A `.pth` zip archive holding `pkl` as `archive/data.pkl`, deflated, padded with a stored
/// member of incompressible bytes so that the file is big enough for the pickle to pass the
/// decompression bound (16 times the file): what is tested is the pickle machine's own budget.
fn zip_pth(pkl: &[u8]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut z = zip::ZipWriter::new(&mut out);
    let o = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    z.start_file("archive/data.pkl", o).unwrap();
    z.write_all(pkl).unwrap();
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    z.start_file("archive/pad", stored).unwrap();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let pad: Vec<u8> = (0..pkl.len() / 8)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    z.write_all(&pad).unwrap();
    z.finish().unwrap();
    out.into_inner()
}

/// Classes 1 and 2 of the issue, as pickles: one-byte opcodes that each add tens of bytes of
/// reader state (DUP, MARK, memo puts), and a few hundred bytes that reach one empty tensor
/// four million times through shared lists.
fn pickle_bombs() -> Vec<(&'static str, Vec<u8>)> {
    let mut dup = vec![0x80, 2, b'N'];
    dup.resize(dup.len() + (32 << 20), b'2');
    let mut mark = vec![0x80, 2];
    mark.resize(mark.len() + (32 << 20), b'(');
    let mut memo = vec![0x80, 2, b'N'];
    for i in 0..(6u32 << 20) {
        memo.push(b'r');
        memo.extend_from_slice(&i.to_le_bytes());
    }
    // An empty float tensor, then 22 levels of [x, x]: 4 Mi references to it.
    let mut flood = vec![0x80, 2];
    flood.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n(");
    flood.extend_from_slice(b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x00tQ");
    flood.extend_from_slice(b"K\x00(K\x00t(K\x01t\x89N)tR");
    for _ in 0..22 {
        flood.extend_from_slice(b"q\x00](h\x00h\x00e");
    }
    flood.push(b'.');
    vec![
        ("dup", zip_pth(&dup)),
        ("mark", zip_pth(&mark)),
        ("memo", zip_pth(&memo)),
        ("flood", zip_pth(&flood)),
    ]
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// A zlib stream that inflates to `n` zero bytes: fixed-Huffman blocks of one literal and
/// then <length 258, distance 1> pairs, 13 bits for 258 bytes (adler32 left wrong: the
/// decoders stop at their limit long before they would check it).
fn zlib_zeros(n: usize) -> Vec<u8> {
    let mut bits: Vec<u8> = Vec::new();
    let (mut acc, mut nbits) = (0u32, 0u32);
    let mut put = |v: u32, n: u32, bits: &mut Vec<u8>| {
        acc |= v << nbits;
        nbits += n;
        while nbits >= 8 {
            bits.push(acc as u8);
            acc >>= 8;
            nbits -= 8;
        }
    };
    let rev = |v: u32, n: u32| (0..n).fold(0, |r, i| r | (((v >> i) & 1) << (n - 1 - i)));
    put(1, 1, &mut bits); // last block
    put(1, 2, &mut bits); // fixed Huffman
    put(rev(0x30, 8), 8, &mut bits); // literal 0
    for _ in 0..(n - 1) / 258 {
        put(rev(0b1100_0101, 8), 8, &mut bits); // length 258 (code 285)
        put(0, 5, &mut bits); // distance 1
    }
    put(0, 7, &mut bits); // end of block
    put(0, 7, &mut bits); // flush
    let mut out = vec![0x78, 0x01];
    out.extend(bits);
    out.extend_from_slice(&[0, 0, 0, 1]);
    out
}

/// An 8x8 RGB PNG (valid pixels) with an iCCP chunk that inflates to `inflated` bytes.
fn png_with_icc_bomb(inflated: usize) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&8u32.to_be_bytes());
    ihdr.extend_from_slice(&8u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    let mut iccp = b"bomb\0\0".to_vec();
    iccp.extend(zlib_zeros(inflated));
    png_chunk(&mut out, b"iCCP", &iccp);
    let rows: Vec<u8> = (0..8)
        .flat_map(|_| std::iter::once(0).chain([128u8; 24]))
        .collect();
    let mut idat = vec![0x78, 0x01, 1, 200, 0, 55, 255];
    idat.extend_from_slice(&rows);
    let adler = {
        let (mut a, mut b) = (1u32, 0u32);
        for &x in &rows {
            a = (a + u32::from(x)) % 65521;
            b = (b + a) % 65521;
        }
        (b << 16) | a
    };
    idat.extend_from_slice(&adler.to_be_bytes());
    png_chunk(&mut out, b"IDAT", &idat);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

fn small_png(path: &Path) {
    common::gradient_rgb(16, 12).save(path).unwrap();
}

// ---------------------------------------------------------------------------------------
// Tests

/// Classes 1 and 2: each bomb is refused with a message, within 600 MB of address space and
/// a few seconds.
#[test]
fn pickle_bombs_are_refused_within_memory() {
    let dir = TempDir::new("rel-pickle");
    for (name, bytes) in pickle_bombs() {
        let f = dir.join(&format!("{name}.pth"));
        std::fs::write(&f, &bytes).unwrap();
        let start = Instant::now();
        let (code, _, err) = cli(600, &["info", p(&f)]);
        assert_eq!(code, 1, "{name}: {err}");
        assert!(
            err.contains(p(&f)),
            "{name}: the message names the file: {err}"
        );
        let why = match name {
            "flood" => "tensors",
            _ => "memory bomb",
        };
        assert!(err.contains(why), "{name}: {err}");
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{name} took {:?}",
            start.elapsed()
        );
    }
}

/// Class 5: device files and FIFOs are refused by name, as an image, a model and an init
/// file, without reading forever or waiting for a writer.
#[test]
fn device_files_and_fifos_are_refused_by_name() {
    let dir = TempDir::new("rel-dev");
    let out = dir.join("out.png");
    let (code, _, err) = cli(600, &["stylize", "/dev/zero", "-o", p(&out)]);
    assert_eq!(code, 1);
    assert!(
        err.contains("/dev/zero") && err.contains("character device"),
        "{err}"
    );
    let (code, _, err) = cli(600, &["info", "/dev/zero"]);
    assert_eq!(code, 1);
    assert!(err.contains("character device"), "{err}");
    let img = dir.join("in.png");
    small_png(&img);
    let (code, _, err) = cli(
        600,
        &["stylize", p(&img), "--model", "/dev/zero", "-o", p(&out)],
    );
    assert_eq!(code, 1);
    assert!(err.contains("character device"), "{err}");

    if !common::require(common::on_path("mkfifo"), "mkfifo (coreutils)") {
        return;
    }
    let fifo = dir.join("pipe.png");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let (code, _, err) = cli(600, &["stylize", p(&fifo), "-o", p(&out)]);
    assert_eq!(code, 1);
    assert!(err.contains("named pipe"), "{err}");
    let (code, _, err) = cli(600, &["info", p(&fifo)]);
    assert_eq!(code, 1);
    assert!(err.contains("named pipe"), "{err}");
}

/// Class 7: an 8x8 PNG whose ICC profile inflates to 1.5 GB decodes (the profile is dropped)
/// within 700 MB of address space.
#[test]
fn png_ancillary_bomb_is_bounded() {
    let dir = TempDir::new("rel-icc");
    let f = dir.join("icc.png");
    std::fs::write(&f, png_with_icc_bomb(1536 << 20)).unwrap();
    let out = dir.join("out.png");
    let (code, _, err) = cli(700, &["stylize", p(&f), "-o", p(&out), "--device", "cpu"]);
    assert_eq!(code, 0, "{err}");
    let styled = image::open(&out).unwrap();
    assert_eq!((styled.width(), styled.height()), (8, 8));
}

/// Class 3 (CLI): an image too big for the memory left is an `error:` line for that file,
/// and the batch goes on with the next one.
#[test]
fn out_of_memory_is_an_error_and_the_batch_goes_on() {
    let dir = TempDir::new("rel-oom");
    let inputs = dir.join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    // 15000 x 15000 (225 MP, under the pixel limit) needs 2.7 GB to decode and convert.
    std::fs::write(
        inputs.join("a_huge.png"),
        common::png_header_only(15000, 15000),
    )
    .unwrap();
    small_png(&inputs.join("b_small.png"));
    let out = dir.join("out");
    let (code, _, err) = cli(
        1500,
        &["stylize", p(&inputs), "-o", p(&out), "--device", "cpu"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("a_huge.png") && err.contains("out of memory"),
        "{err}"
    );
    assert!(
        out.join("b_small.png").is_file(),
        "the batch went on: {err}"
    );
}

/// Class 8: text from a model file reaches the terminal escaped.
#[test]
fn metadata_escapes_are_not_printed_raw() {
    use candle_core::{DType, Device, Tensor};
    let dir = TempDir::new("rel-esc");
    let f = dir.join("evil.safetensors");
    let t = std::collections::HashMap::from([(
        "x\u{1b}]0;pwned\u{7}".to_string(),
        Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap(),
    )]);
    let meta = std::collections::BTreeMap::from([
        ("name".to_string(), "\u{1b}[2J\nerror: forged".to_string()),
        ("note\u{202e}".to_string(), "ok".to_string()),
    ]);
    std::fs::write(&f, cyclegan::to_safetensors_bytes(&t, &meta).unwrap()).unwrap();
    let (code, stdout, err) = cli(600, &["info", p(&f)]);
    assert_eq!(code, 0, "{err}");
    assert!(
        !stdout.contains('\u{1b}') && !stdout.contains('\u{202e}'),
        "{stdout:?}"
    );
    assert!(!stdout.contains("\nerror: forged"), "{stdout:?}");
    assert!(stdout.contains("\\u{1b}[2J\\nerror: forged"), "{stdout:?}");
}

/// Class 9: `cyclegan info monet | head -1` ends quietly.
#[test]
fn info_into_a_closed_pipe_does_not_panic() {
    let mut child = Command::new(CLI)
        .args(["info", "monet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader has gone, like `head` after its lines
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
}

/// Class 9: bad `--max-megapixels` values and an output name taken by a folder.
#[test]
fn careless_cli_values_get_clear_messages() {
    let dir = TempDir::new("rel-cli");
    let img = dir.join("in.png");
    small_png(&img);
    for v in ["nan", "-1", "1e-7", "inf", "0"] {
        let (code, _, err) = cli(
            600,
            &[
                "stylize",
                p(&img),
                "-o",
                p(&dir.join("o.png")),
                &format!("--max-megapixels={v}"),
            ],
        );
        assert_eq!(code, 1, "{v}");
        assert!(
            err.contains("--max-megapixels") && err.contains("positive"),
            "{v}: {err}"
        );
    }
    let out = dir.join("out");
    std::fs::create_dir_all(out.join("in.png")).unwrap();
    let other = dir.join("in2.png");
    small_png(&other);
    let (code, _, err) = cli(
        1500,
        &[
            "stylize",
            p(&img),
            p(&other),
            "-o",
            p(&out),
            "--device",
            "cpu",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("a folder of that name"), "{err}");
    assert!(!err.contains("skipped"), "{err}");
}

// ---------------------------------------------------------------------------------------
// The C ABI, in a child re-run of this binary

/// Runs test `name` of this binary alone in a child under `limit_mb`, with the child marker
/// set; the child's body does the work and the parent checks that it passed.
fn in_child(name: &str, limit_mb: u64) {
    let exe = std::env::current_exe().unwrap();
    let out = limited(
        limit_mb,
        120,
        exe.to_str().unwrap(),
        &[name, "--exact", "--nocapture", "--test-threads=1"],
        &[(CHILD, "1")],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{name} under {limit_mb} MB: {:?}\n{text}",
        out.status
    );
    assert!(text.contains("child ok"), "{text}");
}

fn is_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

fn load_model(opts: *const cyclegan::capi::cg_options) -> *mut cyclegan::capi::cg_model {
    use cyclegan::capi::model::cg_model_load;
    let mut m = std::ptr::null_mut();
    let st = cg_model_load(c"monet".as_ptr(), opts, &mut m);
    assert_eq!(st, 0, "load");
    m
}

fn rgba(buf: &mut [u8], w: u32, h: u32) -> cyclegan::capi::cg_image {
    cyclegan::capi::cg_image {
        data: buf.as_mut_ptr(),
        width: w,
        height: h,
        stride: w as usize * 4,
        format: cyclegan::capi::image::CG_PIXEL_FORMAT_RGBA8,
    }
}

/// Class 3 (C ABI): a valid 16000x16000 RGBA8 image needs a 4 GB working copy; under a 3 GB
/// limit `cg_model_stylize` returns CG_ERR_OUT_OF_MEMORY and the library stays usable.
#[test]
fn capi_out_of_memory_is_a_status() {
    if !is_child() {
        return in_child("capi_out_of_memory_is_a_status", 3072);
    }
    use cyclegan::capi::status::{cg_last_error_message, CG_ERR_OUT_OF_MEMORY};
    use cyclegan::capi::stylize::cg_model_stylize;
    let model = load_model(std::ptr::null());
    let (w, h) = (16000u32, 16000u32);
    let mut src = vec![0u8; (w * h * 4) as usize];
    let s = rgba(&mut src, w, h);
    let mut d = rgba(&mut src, w, h);
    let st = cg_model_stylize(
        model,
        &s,
        &mut d,
        std::ptr::null(),
        None,
        std::ptr::null_mut(),
    );
    let msg = unsafe { std::ffi::CStr::from_ptr(cg_last_error_message()) }.to_string_lossy();
    assert_eq!(st, CG_ERR_OUT_OF_MEMORY, "{msg}");
    assert!(msg.contains("out of memory"), "{msg}");
    drop(src);
    let mut small = vec![100u8; 32 * 24 * 4];
    let s = rgba(&mut small, 32, 24);
    let mut d = rgba(&mut small, 32, 24);
    let st = cg_model_stylize(
        model,
        &s,
        &mut d,
        std::ptr::null(),
        None,
        std::ptr::null_mut(),
    );
    assert_eq!(st, 0, "the library is still usable");
    cyclegan::capi::model::cg_model_free(model);
    println!("child ok");
}

struct Nested {
    model: *mut cyclegan::capi::cg_model,
    opts: *mut cyclegan::capi::cg_options,
    statuses: Vec<u32>,
}

unsafe extern "C" fn nested_progress(user: *mut std::ffi::c_void, _f: f32) -> bool {
    // SAFETY: `user` is the `Nested` the test passed for this call.
    let n = unsafe { &mut *user.cast::<Nested>() };
    if n.statuses.is_empty() {
        let mut px = vec![50u8; 16 * 16 * 4];
        let img = rgba(&mut px, 16, 16);
        let mut out = rgba(&mut px, 16, 16);
        let st = cyclegan::capi::stylize::cg_model_stylize(
            n.model,
            &img,
            &mut out,
            n.opts,
            None,
            std::ptr::null_mut(),
        );
        n.statuses.push(st);
    }
    true
}

/// Class 6: a progress callback that calls `cg_model_stylize` with the same options, whose
/// pool has one thread, completes (it used to wait forever).
#[test]
fn capi_reentrant_stylize_from_the_callback_completes() {
    if !is_child() {
        return in_child("capi_reentrant_stylize_from_the_callback_completes", 4096);
    }
    use cyclegan::capi::options::{cg_options_free, cg_options_new, cg_options_set_threads};
    let mut opts = std::ptr::null_mut();
    assert_eq!(cg_options_new(&mut opts), 0);
    assert_eq!(cg_options_set_threads(opts, 1), 0);
    let model = load_model(opts);
    let mut n = Nested {
        model,
        opts,
        statuses: vec![],
    };
    let mut px = vec![80u8; 48 * 40 * 4];
    let img = rgba(&mut px, 48, 40);
    let mut out = rgba(&mut px, 48, 40);
    let st = cyclegan::capi::stylize::cg_model_stylize(
        model,
        &img,
        &mut out,
        opts,
        Some(nested_progress),
        (&mut n as *mut Nested).cast(),
    );
    assert_eq!(st, 0);
    assert_eq!(n.statuses, vec![0], "the nested call succeeded");
    cyclegan::capi::model::cg_model_free(model);
    cg_options_free(opts);
    println!("child ok");
}

/// Class 4: trainer settings at extreme values are refused with CG_ERR_INVALID_ARGUMENT and
/// the setting's name, within 600 MB.
#[test]
fn capi_extreme_trainer_settings_are_refused() {
    if !is_child() {
        return in_child("capi_extreme_trainer_settings_are_refused", 1024);
    }
    use cyclegan::capi::status::cg_last_error_message;
    use cyclegan::capi::train::cg_trainer_new;
    let dir = TempDir::new("rel-train");
    let content = dir.join("a");
    let style = dir.join("b");
    for d in [&content, &style] {
        std::fs::create_dir_all(d).unwrap();
        small_png(&d.join("x.png"));
    }
    for (k, v) in [
        ("ngf", "100000"),
        ("ndf", "1000000"),
        ("pool", "1000000000000"),
        ("blocks", "100000000"),
        ("blocks", "0"),
        ("batch", "1000000000"),
        ("size", "4294967292"),
    ] {
        let json = format!(
            r#"{{"content": {:?}, "style": {:?}, "out": {:?}, "iterations": 2, "{k}": {v}}}"#,
            p(&content),
            p(&style),
            p(&dir.join("run")),
        );
        let json = std::ffi::CString::new(json).unwrap();
        let mut t = std::ptr::null_mut();
        let st = cg_trainer_new(json.as_ptr(), std::ptr::null(), &mut t);
        let msg = unsafe { std::ffi::CStr::from_ptr(cg_last_error_message()) }.to_string_lossy();
        assert_eq!(st, 1, "{k}={v}: {msg}");
        assert!(msg.contains(&format!("{k} = {v}")), "{k}={v}: {msg}");
        assert!(t.is_null());
    }
    assert!(!dir.join("run").exists(), "nothing was created");
    println!("child ok");
}
