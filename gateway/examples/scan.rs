//! Run the snapshot file scan from the command line (the benchmark in `bench/snapshot/`
//! drives it): prints the stats as JSON on stdout and can write the digests in
//! `sha256sum` format for comparison with coreutils.
//!
//! `cargo run --release -p gateway --example scan -- --root /usr --cache /tmp/scan-cache.bin`

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use attest::ima::HashAlg;
use clap::Parser;
use gateway::scan::{self, CancelToken, ScanConfig, ScanProgress, DEFAULT_EXCLUDES};

/// Scan the files IMA would measure (executables, shared objects, scripts) and hash them.
#[derive(Parser)]
struct Args {
    /// A tree to scan (repeatable). Default: /
    #[arg(long = "root", value_name = "PATH")]
    roots: Vec<PathBuf>,
    /// A path prefix to skip (repeatable), added to the default excludes.
    #[arg(long, value_name = "PATH")]
    exclude: Vec<PathBuf>,
    /// Do not skip the default excludes (/proc, /sys, /dev, /run, /tmp, /var/tmp, ...).
    #[arg(long)]
    no_default_excludes: bool,
    /// The cache file (e.g. DATA_DIR/scan-cache.bin). Default: no cache.
    #[arg(long, value_name = "FILE")]
    cache: Option<PathBuf>,
    /// Digest algorithm: sha1, sha256, sha384 or sha512.
    #[arg(long, default_value = "sha256")]
    alg: HashAlg,
    /// Hashing workers. Default (0): one per core.
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Write `<digest>  <path>` lines, as `sha256sum` does, to this file.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Print a progress line to stderr every second.
    #[arg(long)]
    progress: bool,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut exclude: Vec<PathBuf> = if args.no_default_excludes {
        Vec::new()
    } else {
        DEFAULT_EXCLUDES.iter().map(PathBuf::from).collect()
    };
    exclude.extend(args.exclude);
    let config = ScanConfig {
        roots: if args.roots.is_empty() {
            vec![PathBuf::from("/")]
        } else {
            args.roots
        },
        exclude,
        algorithm: args.alg,
        cache_file: args.cache,
        workers: args.workers,
    };
    let progress = Arc::new(ScanProgress::new());
    let job = {
        let progress = Arc::clone(&progress);
        std::thread::spawn(move || scan::scan(&config, &progress, &CancelToken::new()))
    };
    while !job.is_finished() {
        std::thread::sleep(Duration::from_millis(if args.progress { 1000 } else { 20 }));
        if args.progress && !job.is_finished() {
            eprintln!("{}", serde_json::to_string(&progress.report())?);
        }
    }
    let result = job
        .join()
        .map_err(|_| anyhow::anyhow!("scan thread panicked"))??;
    if let Some(out) = &args.out {
        let file =
            std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
        let mut w = BufWriter::new(file);
        for (path, digest) in &result.files {
            writeln!(w, "{digest}  {path}")?;
        }
        w.flush()?;
    }
    for s in &result.skipped {
        eprintln!("skipped {}: {}", s.path, s.reason);
    }
    println!("{}", serde_json::to_string(&result.stats)?);
    Ok(())
}
