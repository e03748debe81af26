//! Sources that are not regular files: a stream read a few bytes at a time reads exactly as the file does;
//! pipes and standard input (`-`, `/dev/stdin`) through the binary; FIFOs with and without a writer; devices.

use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use backprop::data::{self, Limits, Request, TargetSpec};

use crate::cli::{cmd, stderr, stdout};
use crate::{Trickle, assert_contains, assert_same, gzip, load_stream, write};

#[test]
fn a_stream_in_small_pieces_reads_like_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let texts = [
        "a,b,label\r\n1,2,0\r\n3,4,1\r\n\r\n",
        "\u{feff}1,2,0\r3,4,1\r\r",
        "\"x\",\"y\",t\n1,\"2\",0\n3,\"4\n\",1",
        "1.5,2e3,0\n-3,4,2\n \n\t\n",
    ];
    for (i, text) in texts.iter().enumerate() {
        let path = write(dir.path(), &format!("s{i}.csv"), text);
        let want = data::load_csv(&path, TargetSpec::default()).unwrap();
        let name = path.to_str().unwrap();
        for step in 1..=7 {
            let got = load_stream(name, Trickle::new(*text, step), &Request::new(1)).unwrap();
            assert_same(&got, &want, &format!("{text:?} in pieces of {step}"));
        }
        let got = load_stream(name, Trickle::new(gzip(text.as_bytes()), 5), &Request::new(1)).unwrap();
        assert_same(&got, &want, &format!("{text:?} gzipped"));
    }
}

/// Runs the binary with `input` written to its standard input through a pipe.
fn with_stdin(args: &[&str], input: Vec<u8>) -> Output {
    let mut child =
        cmd().args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&input)); // a closed pipe is the reader's choice
    let out = child.wait_with_output().unwrap();
    let _ = writer.join().unwrap();
    out
}

/// The losses of a `train --json` run, which depend on the data alone (not on its name or timing).
fn losses(o: &Output) -> [serde_json::Value; 3] {
    assert!(o.status.success(), "{}", stderr(o));
    let v: serde_json::Value = serde_json::from_str(&stdout(o)).unwrap();
    [v["train_loss"].clone(), v["test_loss"].clone(), v["test_accuracy"].clone()]
}

#[test]
fn pipes_and_standard_input_read_like_files() {
    let dir = tempfile::tempdir().unwrap();
    let text: String = (0..60).map(|i| format!("{},{},{}\n", i % 7, (i * 3) % 11, i % 3)).collect();
    let csv = write(dir.path(), "rows.csv", &text);
    let train = ["train", "--backend", "cpu", "--epochs", "2", "--json", "--data"];
    let want = losses(&cmd().args(train).arg(&csv).output().unwrap());
    for arg in ["-", "/dev/stdin"] {
        assert_eq!(losses(&with_stdin(&[&train[..], &[arg]].concat(), text.clone().into_bytes())), want, "{arg}");
    }
    // IDX images through a pipe: the magic the format is told by is not lost.
    let mut images = [0x803u32, 30, 2, 3].iter().flat_map(|w| w.to_be_bytes()).collect::<Vec<u8>>();
    images.extend((0..30 * 6).map(|i| (i * 37 % 251) as u8));
    let mut labels = [0x801u32, 30].iter().flat_map(|w| w.to_be_bytes()).collect::<Vec<u8>>();
    labels.extend((0..30).map(|i| (i % 4) as u8));
    let (img, lab) = (write(dir.path(), "images.idx", &images), write(dir.path(), "labels.idx", &labels));
    let idx = ["train", "--backend", "cpu", "--epochs", "2", "--json", "--labels", lab.to_str().unwrap()];
    let want = losses(&cmd().args(idx).args(["--data", img.to_str().unwrap()]).output().unwrap());
    assert_eq!(losses(&with_stdin(&[&idx[..], &["--data", "-"]].concat(), gzip(&images))), want);
    // One pipe cannot feed both files (nor standard input, whatever it is).
    let err = data::Source::open("-", Some(Path::new("-")), &Request::new(1)).unwrap_err().to_string();
    assert_contains(&err, &["--data - and --labels - are the same stream"]);
    let o = with_stdin(&["train", "--data", "-", "--labels", "/dev/stdin"], images);
    assert_eq!(o.status.code(), Some(1));
    assert_contains(&stderr(&o), &["error: --data - and --labels /dev/stdin are the same stream"]);
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo").arg(path).status().expect("mkfifo runs");
    assert!(status.success(), "mkfifo {}", path.display());
}

#[test]
fn a_fifo_is_read_once_a_writer_comes_and_given_up_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("rows.fifo");
    mkfifo(&fifo);
    let short = Limits { fifo_wait: Duration::from_millis(300), ..Limits::detect() };
    let err = data::Input::open(&fifo, &short).unwrap_err().to_string();
    assert_contains(&err, &["rows.fifo", "FIFO that no program opened for writing within 0.3 s"]);

    // A writer that comes later: its data, read to the end.
    let (f, text) = (fifo.clone(), "a,b,y\n1,2,0\n3,4,1\n");
    let late = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        std::fs::write(f, text)
    });
    let ds = data::load(fifo.to_str().unwrap(), None, &Request::new(1)).unwrap();
    late.join().unwrap().unwrap();
    let want = data::load_csv(&write(dir.path(), "rows.csv", text), TargetSpec::default()).unwrap();
    assert_eq!((ds.x, ds.labels), (want.x, want.labels));

    // A writer that opens it and writes nothing: an empty file.
    let f = fifo.clone();
    let silent = std::thread::spawn(move || drop(std::fs::OpenOptions::new().write(true).open(f)));
    let err = data::load(fifo.to_str().unwrap(), None, &Request::new(1)).unwrap_err().to_string();
    silent.join().unwrap();
    assert_contains(&err, &["rows.fifo", "empty"]);
}

/// Runs the binary and returns its one `error:` line (asserting exit status 1 and no other output).
fn one_error(args: &[&str]) -> String {
    let o = cmd().args(args).stdin(Stdio::null()).output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "backprop {args:?}: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.starts_with("note:")).collect();
    assert!(lines.len() == 1 && lines[0].starts_with("error: "), "backprop {args:?}: {err}");
    lines[0].to_string()
}

#[test]
fn devices_end_in_one_clear_error() {
    let train = |data: &str| one_error(&["train", "--backend", "cpu", "--data", data]);
    assert_contains(&train("/dev/zero"), &["/dev/zero: line 1 is longer than 64.0 MiB"]);
    assert_contains(&train("/dev/null"), &["/dev/null", "empty"]);
    assert_contains(&train("-"), &["<stdin>", "empty"]); // standard input is /dev/null here
    for model in ["/dev/zero", "/dev/null"] {
        let err = one_error(&["eval", "--backend", "cpu", "--model", model, "--data", "digits"]);
        assert_contains(&err, &[model, "not a valid safetensors file"]);
    }
    let err = one_error(&["eval", "--backend", "cpu", "--model", "/dev/urandom", "--data", "digits"]);
    assert_contains(&err, &["/dev/urandom", "not a valid safetensors file"]);
}
