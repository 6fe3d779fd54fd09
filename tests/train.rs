//! The trainer end to end on tiny generated images: exact resume, cancel, exported
//! styles, bad input, and the `cyclegan train` command.

use std::path::{Path, PathBuf};
use std::process::Command;

use cyclegan::io::write_image;
use cyclegan::nn::{GeneratorConfig, Layout};
use cyclegan::train::{Length, TrainConfig};
use cyclegan::{stylize, Backend, Error, Model, StylizeOptions, Trainer};
use cyclegan::{BitDepth, Pixels};

/// A fresh folder under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "cyclegan-train-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A small synthetic picture: smooth colour ramps (photos) or stripes (paintings).
fn picture(w: u32, h: u32, seed: u32, striped: bool) -> Pixels {
    let mut p = Pixels::new(w, h, 3, BitDepth::Eight).unwrap();
    for y in 0..h {
        for x in 0..w {
            let i = ((y * w + x) * 3) as usize;
            let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
            let s = seed as f32 * 0.37;
            let v = if striped {
                [
                    0.5 + 0.4 * ((x + y + seed) as f32 * 0.9).sin(),
                    0.5 + 0.3 * (fy * 6.0 + s).cos(),
                    0.6,
                ]
            } else {
                [fx, (fy + s).fract(), 0.5 * (fx + fy)]
            };
            for (dst, v) in p.data_mut()[i..i + 3].iter_mut().zip(v) {
                *dst = (v * 255.0).round().clamp(0.0, 255.0) / 255.0;
            }
        }
    }
    p
}

/// `content/` with 3 photos-like and `style/` with 3 stripe images of varied sizes.
fn make_data(root: &Path) -> (PathBuf, PathBuf) {
    let (a, b) = (root.join("content"), root.join("style"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let sizes = [(40, 36), (36, 48), (44, 40)];
    for (i, &(w, h)) in sizes.iter().enumerate() {
        write_image(
            &a.join(format!("p{i}.png")),
            &picture(w, h, i as u32, false),
        )
        .unwrap();
        write_image(&b.join(format!("s{i}.png")), &picture(h, w, i as u32, true)).unwrap();
    }
    // Not an image: ignored without a word.
    std::fs::write(a.join("notes.txt"), "not a picture").unwrap();
    (a, b)
}

/// The smallest networks that still have every layer type: fast enough for a test.
fn tiny(content: &Path, style: &Path, iterations: u64) -> TrainConfig {
    let mut c = TrainConfig::new(content, style, Length::Iterations(iterations));
    c.size = 32;
    c.batch = 2;
    c.generator = GeneratorConfig {
        layout: Layout::Seed,
        ngf: 4,
        blocks: 2,
    };
    c.ndf = 4;
    // Smaller than the images generated, so the pool's random branch runs too.
    c.pool_size = 3;
    c.seed = 11;
    c
}

fn weights_of(t: &Trainer) -> Vec<(String, Vec<f32>)> {
    let mut v: Vec<(String, Vec<f32>)> = t
        .state()
        .unwrap()
        .network_tensors()
        .unwrap()
        .into_iter()
        .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn resume_continues_exactly() {
    let dir = TempDir::new("resume");
    let (a, b) = make_data(&dir.0);
    let cfg = tiny(&a, &b, 20);

    let mut straight = Trainer::new(cfg.clone(), Backend::Cpu).unwrap();
    let mut losses = Vec::new();
    let s = straight
        .run(u64::MAX, &mut |p| {
            losses.push(p.losses);
            true
        })
        .unwrap();
    assert_eq!((s.iterations, s.finished, s.cancelled), (20, true, false));
    assert!(losses.iter().all(|l| l.g.is_finite() && l.d_a > 0.0));

    let ckpt = dir.0.join("checkpoint.safetensors");
    let mut first = Trainer::new(cfg, Backend::Cpu).unwrap();
    first.run(10, &mut |_| true).unwrap();
    first.save_checkpoint(&ckpt).unwrap();
    drop(first);
    let mut second = Trainer::resume(&ckpt, Backend::Cpu).unwrap();
    assert_eq!(second.iteration(), 10);
    let mut resumed_losses = Vec::new();
    second
        .run(100, &mut |p| {
            resumed_losses.push(p.losses);
            true
        })
        .unwrap();
    assert_eq!(second.iteration(), 20);
    assert_eq!(resumed_losses, losses[10..], "losses after resuming differ");
    let (x, y) = (weights_of(&straight), weights_of(&second));
    assert_eq!(x.len(), y.len());
    for ((k, u), (_, v)) in x.iter().zip(&y) {
        assert!(u == v, "{k} differs after resume");
    }
    // Training moved the weights away from the seeded start.
    let fresh = Trainer::new(tiny(&a, &b, 20), Backend::Cpu).unwrap();
    assert_ne!(weights_of(&fresh), x);
}

#[test]
fn cancel_stops_promptly_and_leaves_a_usable_trainer() {
    let dir = TempDir::new("cancel");
    let (a, b) = make_data(&dir.0);
    let mut t = Trainer::new(tiny(&a, &b, 50), Backend::Cpu).unwrap();
    let mut calls = 0;
    let s = t
        .run(50, &mut |p| {
            calls += 1;
            assert_eq!(p.total, 50);
            p.iteration < 3
        })
        .unwrap();
    assert_eq!((s.iterations, s.cancelled, s.finished), (3, true, false));
    assert_eq!((calls, t.iteration()), (3, 3));
    t.step().unwrap();
    assert_eq!(t.iteration(), 4);
}

#[test]
fn exported_style_loads_and_stylizes() {
    let dir = TempDir::new("export");
    let (a, b) = make_data(&dir.0);
    let mut t = Trainer::new(tiny(&a, &b, 4), Backend::Cpu).unwrap();
    t.run(4, &mut |_| true).unwrap();
    let style = dir.0.join("style.safetensors");
    t.save_style(&style).unwrap();
    t.save_inverse(&dir.0.join("inverse.safetensors")).unwrap();
    let model = Model::load(&style.to_string_lossy(), Backend::Cpu).unwrap();
    let meta = model.metadata();
    assert_eq!(meta["direction"], "content->style");
    assert_eq!(meta["iterations"], "4");
    assert_eq!(meta["dtype"], "f16");
    assert!(meta["data"].contains("content 3 images"), "{meta:?}");
    assert_eq!(model.config().ngf, 4);
    let out = stylize(
        &model,
        &picture(30, 22, 0, false),
        &StylizeOptions::default(),
        &mut |_| true,
    )
    .unwrap();
    assert_eq!((out.width(), out.height()), (30, 22));
    let grid = t.sample_grid().unwrap();
    assert_eq!((grid.width(), grid.height()), (3 * 32 + 8, 2 * 32 + 4));

    // Fine-tuning starts g_ab from the exported file (f16-rounded).
    let mut cfg = tiny(&a, &b, 4);
    cfg.init = Some(style.clone());
    let tuned = Trainer::new(cfg.clone(), Backend::Cpu).unwrap();
    let got = tuned.state().unwrap().network("g_ab").unwrap();
    let want = t.state().unwrap().network("g_ab").unwrap();
    let w = "model.1.weight";
    let d = (&got[w] - &want[w])
        .unwrap()
        .abs()
        .unwrap()
        .max_keepdim(0)
        .unwrap();
    let d = d
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(d < 1e-3, "init differs by {d}");
    cfg.generator.ngf = 8;
    let err = Trainer::new(cfg, Backend::Cpu)
        .err()
        .expect("shape mismatch");
    assert!(err.to_string().contains("4 filters"), "{err}");
}

#[test]
fn checkpoints_are_atomic_and_checked() {
    let dir = TempDir::new("ckpt");
    let (a, b) = make_data(&dir.0);
    let mut t = Trainer::new(tiny(&a, &b, 6), Backend::Cpu).unwrap();
    let ckpt = dir.0.join("checkpoint.safetensors");
    t.run(2, &mut |_| true).unwrap();
    t.save_checkpoint(&ckpt).unwrap();
    t.run(2, &mut |_| true).unwrap();
    t.save_checkpoint(&ckpt).unwrap();
    // Only the finished file remains: no temporaries left behind.
    let names: Vec<String> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    let r = Trainer::resume(&ckpt, Backend::Cpu).unwrap();
    assert_eq!(r.iteration(), 4);

    // A style file is not a checkpoint.
    let style = dir.0.join("style.safetensors");
    t.save_style(&style).unwrap();
    let err = Trainer::resume(&style, Backend::Cpu).err().unwrap();
    assert!(
        err.to_string().contains("not a training checkpoint"),
        "{err}"
    );
    // A torn file (what a non-atomic writer would leave) is refused, not misread.
    let bytes = std::fs::read(&ckpt).unwrap();
    let torn = dir.0.join("torn.safetensors");
    std::fs::write(&torn, &bytes[..bytes.len() / 2]).unwrap();
    assert!(Trainer::resume(&torn, Backend::Cpu).is_err());
    // Network shapes cannot change on resume; the length can.
    let err = Trainer::resume_with(&ckpt, Backend::Cpu, |mut c| {
        c.generator.ngf = 8;
        c
    })
    .err()
    .unwrap();
    assert!(err.to_string().contains("ngf"), "{err}");
    let longer = Trainer::resume_with(&ckpt, Backend::Cpu, |mut c| {
        c.length = Length::Iterations(40);
        c.decay_from = None;
        c
    })
    .unwrap();
    assert_eq!((longer.iteration(), longer.total_iterations()), (4, 40));
}

#[test]
fn bad_input_gives_clear_errors() {
    let dir = TempDir::new("bad");
    let (a, b) = make_data(&dir.0);
    let err = |c: TrainConfig| -> String {
        match Trainer::new(c, Backend::Cpu) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted bad input"),
        }
    };
    let missing = dir.0.join("nope");
    assert!(err(tiny(&missing, &b, 4)).contains("does not exist"));
    let empty = dir.0.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let e = err(tiny(&a, &empty, 4));
    assert!(
        e.contains("style folder") && e.contains("holds no images"),
        "{e}"
    );
    let texts = dir.0.join("texts");
    std::fs::create_dir_all(&texts).unwrap();
    std::fs::write(texts.join("a.txt"), "x").unwrap();
    assert!(err(tiny(&texts, &b, 4)).contains("holds no images"));
    let file = a.join("p0.png");
    assert!(err(tiny(&file, &b, 4)).contains("not a folder"));

    // Unreadable images are skipped with a warning; none readable is an error.
    let broken = dir.0.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("x.png"), b"\x89PNG garbage").unwrap();
    std::fs::write(broken.join("y.jpg"), b"nothing").unwrap();
    let e = err(tiny(&a, &broken, 4));
    assert!(e.contains("none of the 2 images"), "{e}");
    std::fs::copy(b.join("s0.png"), broken.join("z.png")).unwrap();
    let mut t = Trainer::new(tiny(&a, &broken, 2), Backend::Cpu).unwrap();
    let warnings = t.take_warnings();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings.iter().all(|w| w.contains("skipping style image")));
    assert_eq!(t.data_sizes(), (3, 1));
    t.run(2, &mut |_| true).unwrap();

    // A file whose header reads but whose data is cut off is found while training.
    let cut = dir.0.join("cut");
    std::fs::create_dir_all(&cut).unwrap();
    let good = std::fs::read(b.join("s1.png")).unwrap();
    std::fs::write(cut.join("a.png"), &good[..good.len() / 2]).unwrap();
    std::fs::copy(b.join("s0.png"), cut.join("b.png")).unwrap();
    let mut t = Trainer::new(tiny(&a, &cut, 4), Backend::Cpu).unwrap();
    assert!(t.take_warnings().is_empty());
    t.run(4, &mut |_| true).unwrap();
    let w = t.take_warnings();
    assert!(w.len() == 1 && w[0].contains("a.png"), "{w:?}");

    let mut bad = tiny(&a, &b, 4);
    bad.size = 30;
    assert!(matches!(
        Trainer::new(bad, Backend::Cpu),
        Err(Error::InvalidArgument(_))
    ));
    let mut bad = tiny(&a, &b, 4);
    bad.decay_from = Some(4);
    assert!(err(bad).contains("decaying"));
}

fn cli(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cyclegan"))
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.success(), text)
}

#[test]
fn cli_trains_resumes_and_writes_outputs() {
    let dir = TempDir::new("cli");
    let (a, b) = make_data(&dir.0);
    let out = dir.0.join("run");
    let (a, b, o) = (
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    let tiny = [
        "--size",
        "32",
        "--ngf",
        "4",
        "--blocks",
        "2",
        "--ndf",
        "4",
        "--device",
        "cpu",
        "--checkpoint-every",
        "2",
        "--sample-every",
        "2",
    ];
    let mut args = vec![
        "train",
        "--content",
        a,
        "--style",
        b,
        "--out",
        o,
        "--iterations",
        "3",
    ];
    args.extend(tiny);
    let (ok, text) = cli(&args);
    assert!(ok, "{text}");
    for f in [
        "style.safetensors",
        "inverse.safetensors",
        "checkpoint.safetensors",
    ] {
        assert!(out.join(f).is_file(), "{f} missing: {text}");
    }
    assert!(out.join("samples/iter_0000002.png").is_file());
    assert!(out.join("samples/iter_0000003.png").is_file());

    // Starting over in the same folder is refused; --resume continues to the new total.
    let (ok, text) = cli(&args);
    assert!(!ok && text.contains("--resume"), "{text}");
    let (ok, text) = cli(&[
        "train",
        "--out",
        o,
        "--resume",
        "--iterations",
        "5",
        "--device",
        "cpu",
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("from iteration 3"), "{text}");
    let model = Model::load(
        &out.join("style.safetensors").to_string_lossy(),
        Backend::Cpu,
    )
    .unwrap();
    assert_eq!(model.metadata()["iterations"], "5");
    let (ok, text) = cli(&[
        "train", "--out", o, "--resume", "--ngf", "8", "--device", "cpu",
    ]);
    assert!(!ok && text.contains("ngf"), "{text}");

    let fresh = dir.0.join("fresh");
    let fresh = fresh.to_str().unwrap();
    let (ok, text) = cli(&[
        "train",
        "--content",
        a,
        "--style",
        "/no/such/dir",
        "--out",
        fresh,
        "--iterations",
        "2",
    ]);
    assert!(
        !ok && text.contains("style folder /no/such/dir") && text.contains("does not exist"),
        "{text}"
    );
    let (ok, text) = cli(&["train", "--content", a, "--style", b, "--out", fresh]);
    assert!(!ok && text.contains("--iterations"), "{text}");
}

/// Hosts (the C ABI, GUI plugins) run training on a worker thread.
#[test]
fn trainer_can_move_to_another_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<Trainer>();
}
