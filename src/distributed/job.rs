//! One process, or one rank of a job that `mpirun`/`srun` started: how the program starts (MPI, or a
//! refusal where the build has no MPI), which rank speaks, and how the job ends when anything fails on any
//! rank, always within seconds (never a hang).
//!
//! Until every rank has reached `data_parallel` (the start of training), a failure on some ranks is
//! agreed with all of them, and rank 0 reports the first failing rank's error alone. After that, an error
//! every rank reaches together (divergence, drift) is reported by rank 0, and any other error by the rank
//! that met it, which then ends the job (`MPI_Abort`).

use std::sync::OnceLock;
#[cfg(feature = "mpi")]
use std::sync::atomic::{AtomicBool, Ordering};

use super::GradientBackend;
use super::launch::{self, Launch};
use crate::backend::Backend;
use crate::error::{Error, Result};

/// The launch, or the error that reading the launcher's variables met (kept as text, to be read again).
static RANKS: OnceLock<std::result::Result<Option<Launch>, String>> = OnceLock::new();
#[cfg(feature = "mpi")]
static AGREED: AtomicBool = AtomicBool::new(false);

/// The launch this process is a rank of, when the job has more than one rank; an error where the
/// launcher's variables make no sense (`launch::detect`), which `start` reports.
fn launched() -> Result<Option<Launch>> {
    let found = RANKS.get_or_init(|| launch::detect().map(|l| l.filter(|l| l.size > 1)).map_err(|e| e.to_string()));
    found.clone().map_err(Error::Invalid)
}

/// The launch this process is a rank of, when the job has more than one rank (`None` also where the
/// launcher's variables make no sense: this process then runs alone and `start` reports them).
pub fn ranks() -> Option<Launch> {
    launched().ok().flatten()
}

/// True where this process prints and writes files: alone, or rank 0.
pub fn speaks() -> bool {
    ranks().is_none_or(|l| l.rank == 0)
}

/// Call first: under a launcher with more than one rank, starts MPI (or refuses where this build has
/// none), silences every rank but 0, and gives each rank its share of the cores. `command` is the
/// subcommand; only `train` and `bench` run across ranks. Launcher variables that make no sense (a rank
/// not below the size, say) are an error that this process reports itself: rank 0 may not exist.
pub fn start(command: &str) -> Result<()> {
    let Some(l) = launched()? else { return Ok(()) };
    let refuse = |why: String| {
        Err(Error::Invalid(format!(
            "started by {} as rank {} of {}, but {why}; refusing to run {} copies side by side",
            l.launcher, l.rank, l.size, l.size
        )))
    };
    if !cfg!(feature = "mpi") {
        return refuse(
            "this backprop was built without MPI (build it with `cargo build --release --features mpi`, \
             or run it without mpirun/srun)"
                .into(),
        );
    }
    if command != "train" && command != "bench" {
        return refuse(format!("only `train` and `bench` run across ranks, not `{command}`"));
    }
    #[cfg(feature = "mpi")]
    {
        super::mpi::init()?;
        let world = super::mpi::MpiExchange::world()?;
        use super::GradientExchange;
        if (world.rank(), world.size()) != (l.rank, l.size) {
            return Err(Error::Invalid(format!(
                "{} says rank {} of {}, but MPI says rank {} of {}: is this backprop built against the MPI \
                 library of this mpirun?",
                l.launcher,
                l.rank,
                l.size,
                world.rank(),
                world.size()
            )));
        }
    }
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per_rank = (cores / l.local_size.unwrap_or(1).max(1)).max(1);
        let _ = rayon::ThreadPoolBuilder::new().num_threads(per_rank).build_global();
    }
    if l.rank != 0 {
        quiet::silence();
    }
    Ok(())
}

/// How the job runs, for the `backend:` line: empty when alone.
pub fn describe() -> String {
    match ranks() {
        None => String::new(),
        #[cfg(feature = "mpi")]
        Some(l) => format!("; data-parallel over {} ranks ({})", l.size, super::mpi::library()),
        #[cfg(not(feature = "mpi"))]
        Some(l) => format!("; {} ranks", l.size),
    }
}

/// `inner` as this process's backend: itself when alone, else wrapped in `DataParallel` over MPI, once
/// every rank has got this far (a failure before this point on any rank is reported here, on all).
pub fn data_parallel<B: GradientBackend + 'static>(inner: B) -> Result<Box<dyn Backend>> {
    if ranks().is_none() {
        return Ok(Box::new(inner));
    }
    #[cfg(feature = "mpi")]
    {
        let fault = test_fault()?;
        if fault == Some("start") {
            return Err(Error::Invalid("a fault injected by BACKPROP_TEST_FAULT".into()));
        }
        // Summing each layer's gradients during the backward pass: off unless asked for (DESIGN.md).
        let overlap = crate::environment::switch("BACKPROP_OVERLAP")?;
        agree(None)?;
        let mut dp = super::DataParallel::new(inner, super::mpi::MpiExchange::world()?)?;
        dp.set_overlap(overlap);
        match fault {
            Some("error") => dp.inject(super::Fault::Error),
            Some("drift") => dp.inject(super::Fault::Drift),
            _ => {}
        }
        Ok(Box::new(dp))
    }
    #[cfg(not(feature = "mpi"))]
    Err(Error::Invalid("this backprop was built without MPI".into()))
}

/// The exchange among all ranks of this job, once every rank has got this far (like `data_parallel`).
#[cfg(feature = "mpi")]
pub fn exchange() -> Result<super::mpi::MpiExchange> {
    agree(None)?;
    super::mpi::MpiExchange::world()
}

/// The fault `BACKPROP_TEST_FAULT=KIND@RANK` injects on this rank, for the tests of failures: `start`
/// (fails before training starts), `error` (fails at the first epoch's end), `drift` (moves a parameter
/// there). Unset or blank, none; the kind in any case.
#[cfg(feature = "mpi")]
fn test_fault() -> Result<Option<&'static str>> {
    const NAME: &str = "BACKPROP_TEST_FAULT";
    let Some(spec) = crate::environment::read(NAME)? else { return Ok(None) };
    let bad = || crate::environment::invalid(NAME, &spec, &["start@RANK", "error@RANK", "drift@RANK"]);
    let (kind, rank) = spec.split_once('@').ok_or_else(bad)?;
    let kinds = [("start", "start"), ("error", "error"), ("drift", "drift")];
    let kind = crate::environment::choice_value(NAME, Some(kind), &kinds).ok().flatten().ok_or_else(bad)?;
    let rank: usize = rank.trim().parse().map_err(|_| bad())?;
    Ok((ranks().map(|l| l.rank) == Some(rank)).then_some(kind))
}

/// Words (8 bytes each) of an error message carried by the start-up agreement.
#[cfg(feature = "mpi")]
const MESSAGE_WORDS: usize = 96;

/// Every rank says whether it got this far; on any failure, every rank returns the first failing rank's
/// error, as `Error::Distributed`.
#[cfg(feature = "mpi")]
fn agree(failure: Option<&str>) -> Result<()> {
    use super::GradientExchange;
    AGREED.store(true, Ordering::SeqCst);
    let mut words = vec![0u64; 1 + MESSAGE_WORDS];
    if let Some(msg) = failure {
        words[0] = 1;
        let bytes = msg.as_bytes();
        for (w, chunk) in words[1..].iter_mut().zip(bytes.chunks(8)) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            *w = u64::from_le_bytes(b);
        }
    }
    let mut x = super::mpi::MpiExchange::world()?;
    let mut all = vec![0u64; words.len() * x.size()];
    x.all_gather_u64(&words, &mut all)?;
    let failed: Vec<(usize, &[u64])> = all.chunks_exact(words.len()).enumerate().filter(|(_, w)| w[0] != 0).collect();
    let Some(&(rank, w)) = failed.first() else { return Ok(()) };
    let bytes: Vec<u8> = w[1..].iter().flat_map(|v| v.to_le_bytes()).take_while(|&b| b != 0).collect();
    let msg = String::from_utf8_lossy(&bytes);
    let who = match failed.len() {
        1 => format!("rank {rank} of {}", x.size()),
        k if k == x.size() => format!("every rank ({k})"),
        _ => {
            let list: Vec<String> = failed.iter().map(|(r, _)| r.to_string()).collect();
            format!("ranks {} of {} (rank {rank}'s error)", list.join(", "), x.size())
        }
    };
    Err(Error::Distributed(format!("{who}: {msg}")))
}

/// Ends the program: the exit status, after printing the error (if any) as the rules above say. Under MPI,
/// ends MPI or aborts the job.
pub fn finish(result: Result<()>) -> i32 {
    let Some(l) = ranks() else {
        return match result {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {e}");
                1
            }
        };
    };
    #[cfg(feature = "mpi")]
    if crate::distributed::mpi::MpiExchange::world().is_ok() {
        let mut result = result;
        if let Err(e) = &result {
            if !AGREED.load(Ordering::SeqCst) {
                result = agree(Some(&e.to_string()));
            }
        }
        match result {
            Ok(()) => {
                super::mpi::finalize();
                return 0;
            }
            Err(e @ (Error::Distributed(_) | Error::Diverged { .. })) => {
                if l.rank == 0 {
                    eprintln!("error: {e}");
                }
                super::mpi::finalize();
                return 1;
            }
            Err(e) => {
                let host = super::mpi::host();
                quiet::report(&format!("error: rank {} of {} ({host}): {e}", l.rank, l.size));
                // The launcher forwards this rank's stderr; give it a moment to pass the line on before
                // MPI_Abort makes it stop every rank (and their output) of the job.
                std::thread::sleep(std::time::Duration::from_millis(250));
                super::mpi::abort(1);
            }
        }
    }
    // MPI never started: the refusal of `start`, made the same on every rank, is printed by rank 0.
    if let Err(e) = result {
        if l.rank == 0 {
            eprintln!("error: {e}");
        }
        return 1;
    }
    0
}

/// Ranks other than 0 print nothing: their stdout and stderr go to /dev/null, and only a failure is
/// written, to the stderr they started with.
mod quiet {
    #[cfg(target_os = "linux")]
    static SAVED: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

    pub(super) fn silence() {
        #[cfg(target_os = "linux")]
        // SAFETY: plain descriptor calls on descriptors this process owns; failures leave output as it was.
        unsafe {
            let saved = libc::dup(2);
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
            if saved >= 0 && null >= 0 {
                SAVED.store(saved, std::sync::atomic::Ordering::SeqCst);
                libc::dup2(null, 1);
                libc::dup2(null, 2);
                libc::close(null);
            }
        }
    }

    /// Writes `line` to the stderr the process started with.
    #[allow(dead_code)]
    pub(super) fn report(line: &str) {
        #[cfg(target_os = "linux")]
        {
            let fd = SAVED.load(std::sync::atomic::Ordering::SeqCst);
            if fd >= 0 {
                let text = format!("{line}\n");
                // SAFETY: `fd` is the duplicate of stderr made by `silence`, open for the process's life.
                unsafe { libc::write(fd, text.as_ptr().cast(), text.len()) };
                return;
            }
        }
        eprintln!("{line}");
    }
}
