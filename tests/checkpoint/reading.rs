//! Reading within limits, from any source: a missing file is one clear line for every flag, a checkpoint
//! larger than the memory limit is refused from its header, and FIFOs and pipes read as files do.

use backprop::checkpoint;
use serde_json::json;

use super::common;
use super::{ce_model, valid_bytes};

#[test]
fn a_missing_checkpoint_is_one_clear_line_for_every_flag() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.safetensors");
    let m = missing.to_str().unwrap();
    let want = format!("{m}: no such file");
    assert_eq!(checkpoint::load(&missing).unwrap_err().to_string(), want);
    assert_eq!(checkpoint::load_init(&missing, &ce_model().spec).unwrap_err().to_string(), want);
    let out = dir.path().join("out.csv");
    let runs: [&[&str]; 4] = [
        &["train", "--backend", "cpu", "--resume", m],
        &["train", "--backend", "cpu", "--init", m],
        &["eval", "--backend", "cpu", "--model", m],
        &["predict", "--backend", "cpu", "--model", m, "--out", out.to_str().unwrap()],
    ];
    for args in runs {
        let o = common::cli::backprop(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert_eq!(common::cli::stderr(&o), format!("error: {want}\n"), "{args:?}");
    }
}

/// The first bytes of a checkpoint whose one tensor claims `bytes` bytes of data.
fn claiming(bytes: u64) -> Vec<u8> {
    let header = json!({"layers.0.weight": {"dtype": "F32", "shape": [bytes / 4], "data_offsets": [0, bytes]}});
    let mut head = header.to_string().into_bytes();
    head.resize(head.len().next_multiple_of(8), b' ');
    [&(head.len() as u64).to_le_bytes()[..], &head].concat()
}

#[test]
fn a_checkpoint_larger_than_the_memory_limit_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ck.safetensors");
    let bytes = valid_bytes();
    std::fs::write(&path, &bytes).unwrap();
    let small = backprop::data::Limits::with_memory(bytes.len() as u64);
    let e = checkpoint::load_with(&path, &small).unwrap_err().to_string();
    assert!(e.contains("ck.safetensors") && e.contains("the limit given"), "{e}");
    // The header is parsed as JSON, which may take 16 times its size; the tensors twice theirs.
    assert!(checkpoint::load_with(&path, &backprop::data::Limits::with_memory(16 * bytes.len() as u64)).is_ok());

    // A header claiming 64 GiB of tensors, in a (sparse) file that long: refused from the header alone.
    let sparse = dir.path().join("sparse.safetensors");
    let head = claiming(64 << 30);
    std::fs::write(&sparse, &head).unwrap();
    std::fs::OpenOptions::new().write(true).open(&sparse).unwrap().set_len(head.len() as u64 + (64 << 30)).unwrap();
    let gib = backprop::data::Limits::with_memory(1 << 30);
    let e = checkpoint::load_with(&sparse, &gib).unwrap_err().to_string();
    assert!(e.contains("sparse.safetensors: its 64.0 GiB of tensors") && e.contains("more than the 1.0 GiB"), "{e}");
    let e = checkpoint::load_init_with(&sparse, &ce_model().spec, &gib).unwrap_err().to_string();
    assert!(e.contains("64.0 GiB"), "{e}");
}

#[test]
fn checkpoints_read_from_fifos_and_pipes_as_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ck.safetensors");
    let bytes = valid_bytes();
    std::fs::write(&file, &bytes).unwrap();
    let fifo = dir.path().join("ck.fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let (f, b) = (fifo.clone(), bytes.clone());
    let writer = std::thread::spawn(move || std::fs::write(f, b));
    assert_eq!(checkpoint::load(&fifo).unwrap(), checkpoint::load(&file).unwrap());
    writer.join().unwrap().unwrap();

    // A stream that claims 1 TiB after its header: refused there, without draining the writer.
    let f = fifo.clone();
    let writer = std::thread::spawn(move || {
        let mut w = std::fs::OpenOptions::new().write(true).open(f).unwrap();
        std::io::Write::write_all(&mut w, &claiming(1 << 40)).unwrap();
        let block = vec![0u8; 65536];
        (0..1024).take_while(|_| std::io::Write::write_all(&mut w, &block).is_ok()).count()
    });
    let e = checkpoint::load_with(&fifo, &backprop::data::Limits::with_memory(1 << 30)).unwrap_err().to_string();
    assert!(e.contains("ck.fifo: its 1.0 TiB of tensors"), "{e}");
    assert!(writer.join().unwrap() < 1024, "the reader drained 64 MiB from a stream it refused");

    // `eval --model -`: the checkpoint through a pipe on standard input.
    let mut child = common::cli::cmd()
        .args(["eval", "--backend", "cpu", "--model", "-", "--data", "xor"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &bytes).unwrap();
    let o = child.wait_with_output().unwrap();
    // The model (5 inputs) does not fit xor (2 features): the error comes after the checkpoint was read.
    let err = common::cli::stderr(&o);
    assert!(err.contains("xor") && err.contains('5') && !err.contains("safetensors"), "{err}");
}
