//! Corrupt files: random bytes, truncations and flipped header bytes are errors that name the file, never
//! a panic.

use backprop::checkpoint;
use rand::RngExt;

use super::common::rng;
use super::{assert_load_err, no_panic, valid_bytes};

#[test]
fn random_bytes_and_empty_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corrupt.safetensors");
    std::fs::write(&path, b"").unwrap();
    assert_load_err(&path, "empty file");
    let mut r = rng(50);
    for len in [1usize, 7, 8, 9, 64, 1000, 4096] {
        for k in 0..4 {
            let mut bytes: Vec<u8> = (0..len).map(|_| r.random::<u8>()).collect();
            if k == 1 && len >= 8 {
                // A plausible small header length followed by noise.
                let n = (len as u64).saturating_sub(8).min(200);
                bytes[..8].copy_from_slice(&n.to_le_bytes());
            }
            if k == 2 && len >= 8 {
                // A header length far past the end.
                bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes());
            }
            std::fs::write(&path, &bytes).unwrap();
            assert_load_err(&path, &format!("{len} random bytes (variant {k})"));
        }
    }
    // A directory and a missing file.
    assert_load_err(dir.path(), "a directory");
    assert_load_err(&dir.path().join("missing.safetensors"), "a missing file");
}

#[test]
fn truncated_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = valid_bytes();
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let path = dir.path().join("truncated.safetensors");
    let mut lengths = vec![1, 4, 7, 8, 9, 8 + header / 2, 8 + header - 1, 8 + header, 8 + header + 1];
    lengths.extend([bytes.len() - 4, bytes.len() - 1, bytes.len() / 2]);
    for len in lengths {
        std::fs::write(&path, &bytes[..len]).unwrap();
        assert_load_err(&path, &format!("truncated to {len} of {} bytes", bytes.len()));
    }
    // Trailing garbage is also an error.
    let mut longer = bytes.clone();
    longer.extend([0u8; 4]);
    std::fs::write(&path, &longer).unwrap();
    assert_load_err(&path, "4 extra bytes at the end");
}

#[test]
fn flipped_bytes_in_the_header_never_panic_and_structural_ones_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = valid_bytes();
    let path = dir.path().join("flipped.safetensors");
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let text = std::str::from_utf8(&bytes[8..8 + header]).unwrap().to_string();

    // Positions whose flip must be an error: the braces, the quotes around keys, the dtype, the format name.
    let mut must_fail: Vec<usize> = vec![0, text.rfind('}').unwrap()];
    must_fail.push(text.find("\"F32\"").unwrap() + 2); // F32 -> F22/F12/...
    must_fail.push(text.find("backprop-mlp").unwrap() + 3);
    must_fail.push(text.find("\"__metadata__\"").unwrap());
    must_fail.push(text.find("\"layers.0.weight\"").unwrap() + 1);
    must_fail.push(text.find("data_offsets").unwrap() + 1);
    for pos in must_fail {
        for mask in [0x01u8, 0x20, 0x80, 0xff] {
            let mut b = bytes.clone();
            b[8 + pos] ^= mask;
            std::fs::write(&path, &b).unwrap();
            assert_load_err(&path, &format!("header byte {pos} ({:?}) ^ {mask:#x}", text.as_bytes()[pos] as char));
        }
    }

    // Every other single-byte flip: an error naming the file, or a checkpoint that loads (a changed digit in
    // a float can still be a valid file); never a panic.
    let mut errors = 0;
    for pos in 0..header {
        for mask in [0x01u8, 0x04, 0x10, 0x40, 0xff] {
            let mut b = bytes.clone();
            b[8 + pos] ^= mask;
            std::fs::write(&path, &b).unwrap();
            let what = format!("header byte {pos} ^ {mask:#x}");
            match no_panic(&what, || checkpoint::load(&path)) {
                Ok(_) => {}
                Err(e) => {
                    errors += 1;
                    let e = e.to_string();
                    assert!(e.contains(&path.display().to_string()), "{what}: the error does not name the file: {e}");
                }
            }
        }
    }
    assert!(errors > header * 3, "most flips must be errors, got {errors} of {}", header * 5);

    // Flips in the 8-byte length prefix.
    for pos in 0..8 {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut b = bytes.clone();
            b[pos] ^= mask;
            std::fs::write(&path, &b).unwrap();
            assert_load_err(&path, &format!("length byte {pos} ^ {mask:#x}"));
        }
    }
}
