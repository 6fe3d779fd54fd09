//! `cyclegan backends`: what runs where on this machine, one row per backend (the CPU
//! engine, then each GPU backend library found, or the reason there is none).

use cyclegan::engine::dynamic::{self, Status};

/// Prints the table; the exit status is success whatever it finds (it is a report).
pub fn run() -> Result<(), String> {
    let mut rows: Vec<[String; 4]> = vec![[
        "cpu".into(),
        "(built in)".into(),
        env!("CARGO_PKG_VERSION").into(),
        format!(
            "ready: {} threads",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        ),
    ]];
    let mut searched = Vec::new();
    for name in dynamic::KNOWN {
        let Some(report) = dynamic::report(name) else {
            continue;
        };
        if report.candidates.is_empty() {
            rows.push([
                name.into(),
                report.file_name.clone(),
                "-".into(),
                "not found".into(),
            ]);
        }
        for c in &report.candidates {
            let chosen = report
                .chosen()
                .is_some_and(|chosen| std::ptr::eq(chosen, c));
            let status = match &c.status {
                Status::Ready { .. } if !chosen => {
                    format!("{} (not used: an earlier one is)", c.status)
                }
                _ => c.status.to_string(),
            };
            rows.push([
                name.into(),
                c.path.display().to_string(),
                c.status.version().unwrap_or("-").into(),
                status,
            ]);
        }
        searched = report.searched.clone();
    }
    let width = |i: usize| rows.iter().map(|r| r[i].len()).max().unwrap_or(0).max(7);
    let (w0, w1, w2) = (width(0), width(1), width(2));
    println!(
        "{:w0$}  {:w1$}  {:w2$}  STATUS",
        "BACKEND", "LIBRARY", "VERSION"
    );
    for r in &rows {
        println!("{:w0$}  {:w1$}  {:w2$}  {}", r[0], r[1], r[2], r[3]);
    }
    println!();
    let how = if std::env::var_os(dynamic::PATH_ENV).is_some() {
        format!(" (from ${})", dynamic::PATH_ENV)
    } else {
        String::new()
    };
    println!("searched{how}:");
    for d in searched {
        println!("  {}", d.display());
    }
    println!("{}", cyclegan::Backend::Auto.describe_status());
    Ok(())
}
