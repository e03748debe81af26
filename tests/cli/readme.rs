//! The README's command examples, run against the real binary, so the README cannot drift from it.
//!
//! Every fenced block whose first line starts with `$ ` is an example: each `$ ` line is a shell command
//! (run with `sh -c`, stderr merged into stdout as a terminal shows them, `backprop` on the PATH and
//! `cargo run --release` standing for `backprop`), and the lines after it are its output. A line `...`
//! stands for any number of lines. The parts that change from run to run or machine to machine are
//! masked on both sides before comparing: times, samples/s, the backend and adapter names, the
//! verify errors, digits past the sixth decimal (a GPU's last bits), and for `devices` every value.
//! Commands that train or evaluate without naming a backend run where wgpu finds no adapter, so that
//! they take the CPU backend (bit-for-bit reproducible) on any machine, as the README's did.
//!
//! Examples under a launcher need the `mpi` feature's build: the `mpirun` ones are run by tests/mpi, which
//! includes this file, and only there; the `srun` ones need a SLURM cluster and are shown as run once.

use std::path::Path;
use std::process::Command;

use super::common::cli::{backprop, stderr};

/// One example command and the output the README shows for it.
struct Example {
    /// The README line of the command.
    line: usize,
    command: String,
    expected: Vec<String>,
}

fn examples(readme: &str) -> Vec<Example> {
    let mut out: Vec<Example> = Vec::new();
    let (mut fenced, mut example) = (false, false);
    for (i, line) in readme.lines().enumerate() {
        if line.starts_with("```") {
            fenced = !fenced;
            example = false;
            continue;
        }
        if !fenced {
            continue;
        }
        if let Some(cmd) = line.strip_prefix("$ ") {
            example = true;
            out.push(Example { line: i + 1, command: cmd.to_string(), expected: Vec::new() });
        } else if example {
            out.last_mut().expect("a command before its output").expected.push(line.to_string());
        }
    }
    out
}

/// `text` with every number that ends in `s` (seconds) replaced by `[T]s`.
fn mask_seconds(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find(|c: char| c.is_ascii_digit()) {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let len = tail.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(tail.len());
        let after = &tail[len..];
        let word_before = out.chars().last().is_some_and(|c| c.is_alphanumeric() || c == '_');
        let seconds = after.starts_with('s') && !after[1..].starts_with(|c: char| c.is_alphanumeric());
        let rate = after.starts_with(" samples/s");
        out.push_str(if word_before {
            &tail[..len]
        } else if seconds {
            "[T]"
        } else if rate {
            "[R]"
        } else {
            &tail[..len]
        });
        rest = after;
    }
    out + rest
}

/// Digits past the sixth decimal, and numbers in exponent form, masked.
fn mask_digits(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            let core = word.trim_matches(|c: char| "[](),%".contains(c));
            if core.contains('e') && core.parse::<f64>().is_ok() && core.contains('.') {
                return word.replace(core, "[E]");
            }
            match core.split_once('.') {
                Some((int, frac)) if frac.len() > 6 && frac.chars().all(|c| c.is_ascii_digit()) && !int.is_empty() => {
                    word.replace(core, &format!("{int}.{}[..]", &frac[..6]))
                }
                _ => word.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A line with the volatile parts masked, as `command` prints it.
fn mask(command: &str, line: &str) -> String {
    let line = line.trim_end();
    if command.contains("devices") {
        // Which adapters a machine has is its own: keep the layout and the field names, mask the values.
        if let Some((key, _)) = line.split_once(": ") {
            return format!("{key}: [..]");
        }
        if let Some((index, _)) = line.split_once("] ") {
            return format!("{index}] [..]");
        }
        return line.to_string();
    }
    for prefix in ["backend: ", "GPU: "] {
        if line.starts_with(prefix) {
            return format!("{prefix}[..]");
        }
    }
    if let Some((before, _)) = line.split_once("the adapters found are: ") {
        return format!("{before}the adapters found are: [..]");
    }
    let line = mask_digits(&mask_seconds(line));
    match line.split_once("tolerance ") {
        Some((before, _)) if line.starts_with("verify step") => format!("{before}tolerance [..]"),
        _ => line,
    }
}

/// Whether the masked output `got` matches the masked `want`, where a `...` line in `want` matches any
/// number of lines; on a mismatch, the first line of `want` that matched nothing.
fn matches(want: &[String], got: &[String]) -> Result<(), String> {
    match want.split_first() {
        None if got.is_empty() => Ok(()),
        None => Err(format!("more output than the README shows, from: {:?}", got[0])),
        Some((w, rest)) if w == "..." => (0..=got.len())
            .find_map(|skip| matches(rest, &got[skip..]).ok())
            .ok_or_else(|| rest.first().map_or("the end".into(), |l| format!("{l:?} (after a '...')"))),
        Some((w, rest)) => match got.split_first() {
            Some((g, more)) if g == w => matches(rest, more),
            Some((g, _)) => Err(format!("README: {w:?}\n     got: {g:?}")),
            None => Err(format!("README: {w:?}\n     got: the end of the output")),
        },
    }
}

/// Runs one example in `dir`; the error says what differs.
fn run(dir: &Path, bin_dir: &Path, e: &Example) -> Result<(), String> {
    let command = match e.command.strip_prefix("cargo run --release") {
        Some(rest) => format!("backprop{}", rest.replacen(" -- ", " ", 1)),
        None => e.command.clone(),
    };
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut c = Command::new("sh");
    c.args(["-c", &format!("{command} 2>&1")]).current_dir(dir).env("PATH", path);
    // Open MPI refuses to start as root unless told twice.
    c.env("OMPI_ALLOW_RUN_AS_ROOT", "1").env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    let computes = ["backprop train", "backprop eval", "backprop predict", "backprop -", "backprop --"]
        .iter()
        .any(|p| command.starts_with(p) || command == "backprop");
    if computes && !command.contains("--backend") {
        for var in ["VK_ICD_FILENAMES", "VK_DRIVER_FILES"] {
            c.env(var, "/nonexistent/icd.json");
        }
        c.env("WGPU_BACKEND", "vulkan");
    }
    let o = c.output().map_err(|err| format!("cannot run sh: {err}"))?;
    let text = String::from_utf8_lossy(&o.stdout);
    let got: Vec<String> = text.lines().map(|l| mask(&e.command, l)).collect();
    let want: Vec<String> =
        e.expected.iter().map(|l| if l.trim() == "..." { "...".into() } else { mask(&e.command, l) }).collect();
    let failed = want.iter().any(|l| l.starts_with("error: "));
    if o.status.success() == failed {
        return Err(format!(
            "exit status {:?}, but the README shows {}",
            o.status,
            if failed { "an error" } else { "no error" }
        ));
    }
    matches(&want, &got).map_err(|m| format!("{m}\nwhole output:\n{text}"))
}

/// The files the README's error examples name.
fn fixtures(dir: &Path) {
    std::fs::write(dir.join("bad.csv"), "a,b,label\n1,x,0\n").unwrap();
    std::fs::write(dir.join("junk.safetensors"), "this is not a checkpoint").unwrap();
}

#[test]
fn every_command_example_in_the_readme_prints_what_the_readme_shows() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let all = examples(&readme);
    assert!(all.len() >= 15, "only {} examples found in README.md", all.len());
    let all: Vec<Example> = all
        .into_iter()
        .filter(|e| e.command.starts_with("mpirun ") == cfg!(feature = "mpi") && !e.command.starts_with("srun "))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    fixtures(dir.path());
    let bin = Path::new(env!("CARGO_BIN_EXE_backprop"));
    let bin_dir = bin.parent().unwrap();
    // The binary must be reachable as `backprop` (it is, as target/*/backprop).
    assert_eq!(bin.file_name().unwrap(), "backprop");
    let o = backprop(&["--version"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let failures: Vec<String> = all
        .iter()
        .filter_map(|e| {
            run(dir.path(), bin_dir, e).err().map(|m| format!("README.md:{}: $ {}\n{m}", e.line, e.command))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} README examples differ:\n\n{}",
        failures.len(),
        all.len(),
        failures.join("\n\n")
    );
}

#[test]
fn the_readme_matcher_can_fail() {
    let lines = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(matches(&lines(&["a", "...", "d"]), &lines(&["a", "b", "c", "d"])).is_ok());
    assert!(matches(&lines(&["a", "...", "d"]), &lines(&["a", "b", "c"])).is_err());
    assert!(matches(&lines(&["a", "b"]), &lines(&["a", "c"])).is_err());
    assert!(matches(&lines(&["a"]), &lines(&["a", "b"])).is_err());
    assert_eq!(
        mask("x", "trained 30 epochs in 0.05s: train loss 0.01840"),
        "trained 30 epochs in [T]s: train loss 0.01840"
    );
    assert_eq!(mask("x", "lr 1.000e-3  474440 samples/s  0.00s"), "lr [E]  [R] samples/s  [T]s");
    assert_eq!(mask("x", "[0.41000000, 0.47000003]"), "[0.410000[..], 0.470000[..]]");
}

#[test]
fn the_readme_rust_example_is_the_crate_docs_tested_one() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let docs: Vec<&str> =
        lib.lines().filter_map(|l| l.strip_prefix("//!")).map(|l| l.strip_prefix(' ').unwrap_or(l)).collect();
    let start = readme.find("```rust\n").expect("a rust example in the README") + "```rust\n".len();
    let block: Vec<&str> = readme[start..].split("\n```").next().unwrap().lines().collect();
    assert!(block.len() > 5, "{block:?}");
    // The README's lines appear in the crate docs, one after another.
    let at = docs.windows(block.len()).position(|w| w == block.as_slice());
    assert!(at.is_some(), "the README's rust example is not in src/lib.rs's docs as it stands:\n{}", block.join("\n"));
}
