//! Every decoder of the protocol fed millions of generated and mutated
//! inputs, with the heap each input takes measured.
//!
//! ```text
//! cargo run --release --example fuzz_decoders -- --inputs 10000000 [--seed 1]
//! ```
//!
//! The inputs and checks are the crate's quick fuzz test
//! (`src/engine/wire/fuzz.rs`, included here), run longer. A counting global
//! allocator keeps the peak of live heap bytes: before each input the peak
//! is reset to the live level, after it the rise is that input's heap. The
//! run prints, per decoder, the inputs fed, how many decoded or were
//! refused, the panics (caught, counted), the failed checks, the longest
//! input and the most heap one input took; then the totals and the time.
//! It exits with an error if anything panicked, failed a check, or a
//! decoder alone took more heap than a frame may be long
//! (`wire::FRAME_LEN_MAX`). Rows of inputs fed to a whole node show their
//! heap in parentheses: a node also keeps what it learns (members, a ring).

// The run reports how long it took: it reads the clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::cell::Cell;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use clap::Parser;

#[global_allocator]
static HEAP: peak_alloc::PeakAlloc = peak_alloc::PeakAlloc;

/// What the fuzz harness names as `crate::engine`.
mod engine {
    pub use ::custody::engine::*;
}

// The harness also holds the quick test's no-op meter, unused here.
#[allow(dead_code)]
#[path = "../src/engine/wire/fuzz.rs"]
mod fuzz;

#[derive(Parser)]
#[command(about = "Fuzz every decoder of the protocol and measure the heap each input takes")]
struct Args {
    /// Inputs to feed, over all decoders.
    #[arg(long, default_value_t = 10_000_000)]
    inputs: u64,
    /// Seed of the input generator: the same seed feeds the same inputs.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// The heap one input takes, read from the global allocator.
struct PeakMeter {
    base: Cell<usize>,
}

impl fuzz::Meter for PeakMeter {
    fn start(&self) {
        self.base.set(HEAP.current_usage());
        HEAP.reset_peak_usage();
    }

    fn peak(&self) -> usize {
        HEAP.peak_usage().saturating_sub(self.base.get())
    }
}

/// Panics printed in full; the rest are only counted.
const PANICS_PRINTED_MAX: u64 = 5;

fn main() -> ExitCode {
    let args = Args::parse();
    let printed = AtomicU64::new(0);
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if printed.fetch_add(1, Ordering::Relaxed) < PANICS_PRINTED_MAX {
            default_hook(info);
        }
    }));

    let meter = PeakMeter { base: Cell::new(0) };
    let started = Instant::now();
    let report = fuzz::run(args.seed, args.inputs, &meter, |done| {
        if done % (1 << 20) == 0 {
            eprintln!("{done} inputs, {:.0} s", started.elapsed().as_secs_f64());
        }
    });
    let seconds = started.elapsed().as_secs_f64();

    print!("{}", report.table());
    println!(
        "{} inputs in {seconds:.1} s ({:.0} inputs/s), seed {}",
        report.inputs(),
        report.inputs() as f64 / seconds,
        args.seed
    );
    for problem in &report.problems {
        println!("{problem}");
    }
    let frame_bound = engine::wire::FRAME_LEN_MAX;
    for heavy in report.heavier_than(frame_bound) {
        println!("{heavy}");
    }
    if report.panics() > 0 || report.failures() > 0 || report.max_decoder_peak() > frame_bound {
        println!("FAILED");
        return ExitCode::FAILURE;
    }
    println!("ok: nothing panicked, every check held, no decoder took more heap than {frame_bound} bytes");
    ExitCode::SUCCESS
}
