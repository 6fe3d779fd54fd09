//! Tests of the reader on pickles and archives written opcode by opcode, and on the
//! project's fixtures (tests/fixtures: PyTorch-written files of every supported layout).

use super::tensors::collect;
use super::vm::{Persid, Pickle};
use super::*;
use std::io::{Cursor, Write};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}{name}"))
        .unwrap_or_else(|e| panic!("fixture {FIXTURES}{name}: {e}"))
}

/// A pickle written opcode by opcode, as torch's protocol 2 writes it.
struct Pk(Vec<u8>);

impl Pk {
    fn new() -> Self {
        Pk(vec![0x80, 2])
    }
    fn op(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    fn s(&mut self, s: &str) -> &mut Self {
        self.op(b"X")
            .op(&(s.len() as u32).to_le_bytes())
            .op(s.as_bytes())
    }
    fn i(&mut self, v: i32) -> &mut Self {
        self.op(b"J").op(&v.to_le_bytes())
    }
    fn long(&mut self, v: i64) -> &mut Self {
        self.op(&[0x8a, 8]).op(&v.to_le_bytes())
    }
    fn g(&mut self, module: &str, name: &str) -> &mut Self {
        self.op(b"c")
            .op(module.as_bytes())
            .op(b"\n")
            .op(name.as_bytes())
            .op(b"\n")
    }
    fn ints(&mut self, v: &[i64]) -> &mut Self {
        self.op(b"(");
        for &x in v {
            self.long(x);
        }
        self.op(b"t")
    }
    fn done(&mut self) -> Vec<u8> {
        self.op(b".");
        std::mem::take(&mut self.0)
    }
}

/// (name, storage key, storage numel, offset, shape, stride)
type Spec<'a> = (&'a str, &'a str, i64, i64, &'a [i64], &'a [i64]);

fn state_dict(p: &mut Pk, tensors: &[Spec], legacy: bool) {
    p.g("collections", "OrderedDict").op(b")R(");
    for &(name, key, numel, offset, shape, stride) in tensors {
        p.s(name).g("torch._utils", "_rebuild_tensor_v2").op(b"((");
        p.s("storage")
            .g("torch", "FloatStorage")
            .s(key)
            .s("cpu")
            .long(numel);
        if legacy {
            p.op(b"N");
        }
        p.op(b"tQ").long(offset).ints(shape).ints(stride);
        p.op(b"\x89")
            .g("collections", "OrderedDict")
            .op(b")Rt")
            .op(b"R");
    }
    p.op(b"u");
}

fn floats(n: usize) -> Vec<u8> {
    (0..n).flat_map(|i| (i as f32).to_le_bytes()).collect()
}

fn legacy_file(tensors: &[Spec], storages: &[(&str, usize)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut magic = vec![0x80, 2, 0x8a, 10];
    magic.extend_from_slice(&LEGACY_MAGIC.to_le_bytes()[..10]);
    magic.push(b'.');
    out.extend(magic);
    out.extend(Pk::new().op(b"M\xe9\x03").done());
    out.extend(Pk::new().op(b"}(").s("little_endian").op(b"\x88u").done());
    let mut p = Pk::new();
    state_dict(&mut p, tensors, true);
    out.extend(p.done());
    let mut p = Pk::new();
    p.op(b"](");
    for (k, _) in storages {
        p.s(k);
    }
    out.extend(p.op(b"e").done());
    for &(_, n) in storages {
        out.extend((n as u64).to_le_bytes());
        out.extend(floats(n));
    }
    out
}

fn zip_file(pkl: &[u8], storages: &[(&str, usize)], deflate: bool) -> Vec<u8> {
    let raw: Vec<_> = storages.iter().map(|&(k, n)| (k, floats(n))).collect();
    zip_raw(pkl, &raw, deflate)
}

fn zip_raw(pkl: &[u8], storages: &[(&str, Vec<u8>)], deflate: bool) -> Vec<u8> {
    let method = if deflate {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let opts = zip::write::SimpleFileOptions::default().compression_method(method);
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    w.start_file("archive/data.pkl", opts).unwrap();
    w.write_all(pkl).unwrap();
    w.start_file("archive/byteorder", opts).unwrap();
    w.write_all(b"little").unwrap();
    for (k, data) in storages {
        w.start_file(format!("archive/data/{k}"), opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn zip_state_dict(tensors: &[Spec], storages: &[(&str, usize)]) -> Vec<u8> {
    let mut p = Pk::new();
    state_dict(&mut p, tensors, false);
    zip_file(&p.done(), storages, false)
}

fn f32s(t: &RawTensor) -> Vec<f32> {
    t.data
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

const SMALL: &[Spec] = &[
    ("a.weight", "0", 6, 0, &[2, 3], &[3, 1]),
    ("a.t", "0", 6, 0, &[3, 2], &[1, 3]),
    ("b.bias", "1", 4, 1, &[2], &[2]),
];
const SMALL_STORAGES: &[(&str, usize)] = &[("0", 6), ("1", 4)];

fn check_small(ts: &[RawTensor]) {
    let names: Vec<_> = ts.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["a.weight", "a.t", "b.bias"]);
    assert_eq!(ts[0].shape, [2, 3]);
    assert_eq!(f32s(&ts[0]), [0., 1., 2., 3., 4., 5.]);
    assert_eq!(ts[1].shape, [3, 2]);
    assert_eq!(f32s(&ts[1]), [0., 3., 1., 4., 2., 5.]);
    assert_eq!(f32s(&ts[2]), [1., 3.]);
    assert!(ts.iter().all(|t| t.dtype == RawDtype::F32));
}

#[test]
fn small_files_in_both_formats() {
    check_small(&read_pth(&legacy_file(SMALL, SMALL_STORAGES)).unwrap());
    check_small(&read_pth(&zip_state_dict(SMALL, SMALL_STORAGES)).unwrap());
    let mut p = Pk::new();
    state_dict(&mut p, SMALL, false);
    check_small(&read_pth(&zip_file(&p.done(), SMALL_STORAGES, true)).unwrap());
}

/// `_rebuild_tensor_v2(storage, 0, shape, contiguous stride, False, None)`.
fn tensor(p: &mut Pk, storage_type: &str, key: &str, shape: &[i64]) {
    let numel = shape.iter().product();
    let stride: Vec<i64> = (0..shape.len())
        .map(|i| shape[i + 1..].iter().product())
        .collect();
    p.g("torch._utils", "_rebuild_tensor_v2")
        .op(b"((")
        .s("storage");
    p.g("torch", storage_type)
        .s(key)
        .s("cpu")
        .long(numel)
        .op(b"tQ");
    p.long(0).ints(shape).ints(&stride).op(b"\x89NtR");
}

#[test]
fn other_dtypes_and_parameters() {
    let mut p = Pk::new();
    p.op(b"}(")
        .s("h")
        .g("torch._utils", "_rebuild_parameter")
        .op(b"(");
    tensor(&mut p, "HalfStorage", "h", &[2]);
    p.op(b"\x88").g("collections", "OrderedDict").op(b")RtR");
    p.s("step");
    tensor(&mut p, "LongStorage", "l", &[]);
    p.s("mask");
    tensor(&mut p, "BoolStorage", "b", &[3]);
    p.s("bf");
    tensor(&mut p, "BFloat16Storage", "f", &[1, 2]);
    let pkl = p.op(b"u").done();
    let half: Vec<u8> = [1.5f32, -2.0]
        .iter()
        .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
        .collect();
    let storages = [
        ("h", half.clone()),
        ("l", 7i64.to_le_bytes().to_vec()),
        ("b", vec![1, 0, 1]),
        ("f", vec![1, 2, 3, 4]),
    ];
    let ts = read_pth(&zip_raw(&pkl, &storages, false)).unwrap();
    let got: Vec<_> = ts
        .iter()
        .map(|t| (t.name.as_str(), t.dtype, t.shape.clone()))
        .collect();
    assert_eq!(
        got,
        [
            ("h", RawDtype::F16, vec![2]),
            ("step", RawDtype::I64, vec![]),
            ("bf", RawDtype::BF16, vec![1, 2]),
        ]
    );
    assert_eq!(ts[0].data, half);
    assert_eq!(ts[1].data, 7i64.to_le_bytes());
    assert_eq!(ts[2].data, [1, 2, 3, 4]);
}

#[test]
fn legacy_storage_views() {
    let spec: &[Spec] = &[("v", "0", 6, 0, &[3], &[1])];
    let file = legacy_file(spec, &[("0", 6)]);
    let at = file.windows(3).position(|w| w == b"NtQ").unwrap();
    let with_view = |first: i64, len: i64| {
        let mut view = Pk(Vec::new());
        view.op(b"(").s("0v").long(first).long(len).op(b"t");
        [&file[..at], &view.0, &file[at + 1..]].concat()
    };
    let ts = read_pth(&with_view(2, 3)).unwrap();
    assert_eq!(f32s(&ts[0]), [2., 3., 4.]);
    assert!(read_pth(&with_view(2, 2)).is_err());
    assert!(read_pth(&with_view(5, 3)).is_err());
    assert!(read_pth(&with_view(i64::MAX, 3)).is_err());
}

#[test]
fn nested_dicts_get_dotted_names() {
    let mut p = Pk::new();
    p.op(b"}(").s("state_dict").op(b"}(").s("model");
    state_dict(&mut p, &SMALL[..1], false);
    p.op(b"u")
        .s("epoch")
        .i(3)
        .s("lr")
        .op(b"G")
        .op(&0.5f64.to_be_bytes());
    p.s("opt").op(b"]q\x07(").i(1).op(b"h\x07e").op(b"u");
    let ts = read_pth(&zip_file(&p.done(), &SMALL_STORAGES[..1], false)).unwrap();
    assert_eq!(ts.len(), 1);
    assert_eq!(ts[0].name, "state_dict.model.a.weight");
}

#[test]
fn metadata_build_is_ignored() {
    let mut p = Pk::new();
    state_dict(&mut p, &SMALL[..1], false);
    p.op(b"}(")
        .s("_metadata")
        .g("collections", "OrderedDict")
        .op(b")R(")
        .s("");
    p.op(b"}(").s("version").i(1).op(b"uuub");
    let ts = read_pth(&zip_file(&p.done(), &SMALL_STORAGES[..1], false)).unwrap();
    assert_eq!(ts.len(), 1);
}

fn assert_refused(r: Result<Vec<RawTensor>>, what: &str) {
    match r {
        Err(Error::Unsupported(msg)) => assert!(msg.contains(what), "{msg}"),
        other => panic!("expected refusal mentioning {what}, got {other:?}"),
    }
}

#[test]
fn refuses_code_execution() {
    let evil = b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03.";
    assert_refused(read_pth(evil), "pickle global os.system is not allowed");
    assert_refused(read_pth(&zip_file(evil, &[], false)), "os.system");
    for (m, n) in [
        ("posix", "system"),
        ("builtins", "eval"),
        ("subprocess", "Popen"),
    ] {
        let pkl = Pk::new().g(m, n).done();
        assert_refused(read_pth(&zip_file(&pkl, &[], false)), &format!("{m}.{n}"));
        let pkl = Pk::new().s(m).s(n).op(b"\x93").done();
        assert_refused(read_pth(&zip_file(&pkl, &[], false)), &format!("{m}.{n}"));
    }
    let pkl = Pk::new()
        .g("__builtin__", "eval")
        .s("1")
        .op(b"\x85R")
        .done();
    assert_refused(read_pth(&pkl), "__builtin__.eval");
    // Calling a string, calling a storage class, NEWOBJ of a storage class.
    for body in [
        &b"X\x00\x00\x00\x00)R"[..],
        b"ctorch\nFloatStorage\n)R",
        b"ctorch\nFloatStorage\n)\x81",
    ] {
        let pkl = Pk::new().op(body).done();
        assert!(matches!(
            read_pth(&zip_file(&pkl, &[], false)),
            Err(Error::Unsupported(_))
        ));
    }
    let pkl = Pk::new().op(b"}").op(b"\xfe").done();
    assert_refused(read_pth(&zip_file(&pkl, &[], false)), "opcode 0xfe");
}

#[test]
fn refuses_malformed_pickles() {
    for body in [
        &b"0"[..],
        b"(0",
        b"h\x05",
        b"j\x00\x00\x01\x00",
        b"N(s",
        b"Nu",
        b"N\x86",
        b"X\xff\xff\xff\xff",
    ] {
        let pkl = Pk::new().op(body).done();
        assert!(
            matches!(
                read_pth(&zip_file(&pkl, &[], false)),
                Err(Error::Format { .. })
            ),
            "{body:?}"
        );
    }
    // A list holding itself is skipped past, not recursed forever.
    let pkl = Pk::new().op(b"]q\x00h\x00a").done();
    assert!(read_pth(&zip_file(&pkl, &[], false)).unwrap().is_empty());
    // Deep nesting neither overflows the stack when built nor when dropped.
    let mut deep = Pk::new();
    deep.op(b"N").op(&vec![0x85; 200_000]);
    assert!(read_pth(&zip_file(&deep.done(), &[], false)).is_err());
}

#[test]
fn refuses_out_of_range_tensors() {
    let cases: &[Spec] = &[
        ("offset", "0", 4, 3, &[2], &[1]),
        ("stride", "0", 4, 0, &[2, 2], &[3, 1]),
        ("huge", "0", 4, 0, &[1 << 40, 1 << 40], &[1, 1]),
        ("broadcast", "0", 4, 0, &[1 << 40], &[0]),
        ("negative", "0", 4, -1, &[1], &[1]),
    ];
    for case in cases {
        let r = read_pth(&zip_state_dict(&[*case], &[("0", 4)]));
        assert!(matches!(r, Err(Error::Format { .. })), "{}: {r:?}", case.0);
        let r = read_pth(&legacy_file(&[*case], &[("0", 4)]));
        assert!(matches!(r, Err(Error::Format { .. })), "{}: {r:?}", case.0);
    }
    // Declared storage sizes larger than the data present.
    let big: &[Spec] = &[("big", "0", 1 << 50, 0, &[1], &[1])];
    assert!(read_pth(&zip_state_dict(big, &[("0", 4)])).is_err());
    assert!(read_pth(&legacy_file(big, &[("0", 4)])).is_err());
    let mut lying = legacy_file(&SMALL[..1], &SMALL_STORAGES[..1]);
    let at = lying.len() - 6 * 4 - 8;
    lying[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(read_pth(&lying).is_err());
}

#[test]
fn every_truncation_of_small_files_fails() {
    for file in [
        legacy_file(SMALL, SMALL_STORAGES),
        zip_state_dict(SMALL, SMALL_STORAGES),
    ] {
        for n in 0..file.len() {
            assert!(
                read_pth(&file[..n]).is_err(),
                "prefix {n} of {} parsed",
                file.len()
            );
        }
    }
}

#[test]
fn random_corruption_never_panics() {
    let mut seed = 0x9e3779b97f4a7c15u64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for file in [
        legacy_file(SMALL, SMALL_STORAGES),
        zip_state_dict(SMALL, SMALL_STORAGES),
    ] {
        for _ in 0..3000 {
            let mut f = file.clone();
            for _ in 0..1 + rand() % 4 {
                let at = (rand() % f.len() as u64) as usize;
                f[at] = rand() as u8;
            }
            let _ = read_pth(&f);
        }
    }
}

#[test]
fn pickle_soup_never_panics() {
    let mut seed = 0x2545f4914f6cdd1du64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let ops = b"\x80\x95.(012}])t\x85\x86\x87suaeJKM\x8aGX\x8c\x8dUTBCN\x88\x89\x93qr\x94hjRbQ\x81";
    let mut good = Pk::new();
    state_dict(&mut good, SMALL, false);
    let good = good.done();
    for round in 0..20_000 {
        let soup: Vec<u8> = if round % 2 == 0 {
            (0..rand() % 64)
                .map(|_| match rand() % 3 {
                    0 => rand() as u8 % 4,
                    _ => ops[(rand() % ops.len() as u64) as usize],
                })
                .collect()
        } else {
            let mut f = good.clone();
            for _ in 0..1 + rand() % 3 {
                let at = (rand() % f.len() as u64) as usize;
                f[at] = ops[(rand() % ops.len() as u64) as usize];
            }
            f
        };
        for persid in [Persid::Zip, Persid::Legacy] {
            let mut vm = Pickle::new(&soup, 0, persid, vm_budget_for(&soup));
            if let Ok(top) = vm.run() {
                let _ = collect(&vm, &top);
            }
        }
    }
}

#[test]
fn shared_subobjects_cannot_blow_up_the_walk() {
    let mut p = Pk::new();
    p.op(b"}q\x00");
    for level in 1..60u8 {
        p.op(b"}(")
            .s("a")
            .op(&[b'h', level - 1])
            .s("b")
            .op(&[b'h', level - 1]);
        p.op(b"u").op(&[b'q', level]);
    }
    assert!(read_pth(&zip_file(&p.done(), &[], false)).is_err());
}

#[test]
fn fixture_matches_safetensors() {
    let (pth, st) = (fixture("el_ngf8_b9.pth"), fixture("el_ngf8_b9.safetensors"));
    let ts = read_pth(&pth).unwrap();
    let st = safetensors::SafeTensors::deserialize(&st).unwrap();
    assert_eq!(ts.len(), st.len());
    for t in &ts {
        let view = st.tensor(&t.name).unwrap();
        assert_eq!(view.dtype(), safetensors::Dtype::F32, "{}", t.name);
        assert_eq!(t.dtype, RawDtype::F32, "{}", t.name);
        assert_eq!(view.shape(), t.shape.as_slice(), "{}", t.name);
        assert_eq!(view.data(), t.data.as_slice(), "{}", t.name);
    }
}

#[test]
fn legacy_fixture_matches_zip_fixture() {
    let (zip, legacy) = (fixture("jz_ngf8_b9.pth"), fixture("jz_ngf8_b9_legacy.pth"));
    let a = read_pth(&zip).unwrap();
    let b = read_pth(&legacy).unwrap();
    assert!(a.len() > 40);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!((&x.name, x.dtype, &x.shape), (&y.name, y.dtype, &y.shape));
        assert_eq!(x.data, y.data, "{}", x.name);
    }
    let b6 = read_pth(&fixture("jz_ngf8_b6.pth")).unwrap();
    assert!(b6.len() < a.len() && b6.iter().any(|t| t.name == "model.1.weight"));
    assert!(looks_like_pth(&zip) && looks_like_pth(&legacy) && !looks_like_pth(b"\x89PNG"));
}

#[test]
fn fixture_truncations_fail() {
    for name in ["jz_ngf8_b9_legacy.pth", "el_ngf8_b9.pth"] {
        let file = fixture(name);
        for k in 0..200 {
            let n = file.len() * k / 200;
            assert!(read_pth(&file[..n]).is_err(), "{name}: prefix {n} parsed");
        }
    }
}

/// A one-byte opcode adds 8 to 64 bytes of machine state; 20 MiB of them would have held
/// hundreds of megabytes. The budget (the file's size, at least 16 MiB) refuses them.
#[test]
fn one_byte_opcodes_cannot_grow_the_machine_past_its_budget() {
    for (name, op) in [
        ("DUP", b'2'),
        ("MARK", b'('),
        ("MEMOIZE", 0x94),
        ("EMPTY_LIST", b']'),
    ] {
        let mut p = vec![0x80, 4, b'N'];
        p.resize(p.len() + (20 << 20), op);
        p.push(b'.');
        let mut vm = Pickle::new(&p, 0, Persid::Zip, vm_budget_for(&p));
        let e = vm.run().unwrap_err().to_string();
        assert!(e.contains("memory bomb"), "{name}: {e}");
    }
    // The same bytes behind a deflated zip are refused by the decompression bound first.
    let mut p = vec![0x80, 2, b'N'];
    p.resize(4 << 20, b'2');
    let e = read_pth(&zip_file(&p, &[], true)).unwrap_err().to_string();
    assert!(e.contains("memory bomb"), "{e}");
}

/// 4 Mi references to one empty tensor through shared lists cost nothing against the byte
/// budget; the tensor cap stops them after 65 536.
#[test]
fn empty_tensor_floods_are_capped() {
    let mut p = Pk::new();
    tensor(&mut p, "FloatStorage", "0", &[0]);
    for _ in 0..22 {
        p.op(b"q\x00](h\x00h\x00e");
    }
    let file = zip_file(&p.done(), &[("0", 0)], false);
    let start = std::time::Instant::now();
    let e = read_pth(&file).unwrap_err().to_string();
    assert!(e.contains("more than 65536 tensors"), "{e}");
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    // A few thousand empty tensors are fine, but each pays for its record.
    let mut p = Pk::new();
    tensor(&mut p, "FloatStorage", "0", &[0]);
    for _ in 0..12 {
        p.op(b"q\x00](h\x00h\x00e");
    }
    let ts = read_pth(&zip_file(&p.done(), &[("0", 0)], false)).unwrap();
    assert_eq!(ts.len(), 4096);
    assert!(ts.iter().all(|t| t.data.is_empty() && t.shape == [0]));
}

#[test]
fn opcodes_are_named() {
    use super::vm::OpCode;
    assert_eq!(OpCode::from_byte(b'.'), Some(OpCode::Stop));
    assert_eq!(OpCode::from_byte(0x95), Some(OpCode::Frame));
    assert_eq!(
        OpCode::from_byte(b'i'),
        None,
        "INST builds arbitrary objects: not supported"
    );
    let known = (0..=255u8)
        .filter(|&b| OpCode::from_byte(b).is_some())
        .count();
    assert_eq!(known, 44);
}
