//! Rerun the fuzz checks over files, without libFuzzer (stable toolchain):
//! `cargo run --release --example replay -- request_parser corpus/request_parser`.

use std::path::Path;
use std::process::ExitCode;

fn visit(path: &Path, check: fn(&[u8]), count: &mut usize) -> std::io::Result<()> {
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.path());
        for e in entries {
            visit(&e.path(), check, count)?;
        }
    } else {
        let data = std::fs::read(path)?;
        if std::panic::catch_unwind(|| check(&data)).is_err() {
            eprintln!("failing input: {}", path.display());
            std::process::exit(1);
        }
        *count += 1;
    }
    Ok(())
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let check: fn(&[u8]) = match args.next().as_deref() {
        Some("request_parser") => respite_fuzz::request_parser,
        Some("reply_scanner") => respite_fuzz::reply_scanner,
        _ => {
            eprintln!("usage: replay request_parser|reply_scanner FILE_OR_DIR...");
            return ExitCode::FAILURE;
        }
    };
    let mut count = 0;
    for p in args {
        if let Err(e) = visit(Path::new(&p), check, &mut count) {
            eprintln!("{p}: {e}");
            return ExitCode::FAILURE;
        }
    }
    println!("{count} inputs passed");
    ExitCode::SUCCESS
}
