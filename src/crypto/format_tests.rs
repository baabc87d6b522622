//! Format tests: size arithmetic, and every kind of tampering the format must detect.

use proptest::prelude::*;

use super::*;

fn key(b: u8) -> Secret {
    Secret([b; 32])
}

fn sample(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

proptest! {
    #[test]
    fn sizes_map_both_ways(plain in 0u64..(1 << 40)) {
        let c = cipher_size(plain);
        prop_assert_eq!(plain_size(c), Ok(plain));
        prop_assert!(cipher_size(plain + 1) > c, "monotonic");
    }

    #[test]
    fn invalid_sizes_are_refused(cipher in 0u64..(1 << 30)) {
        if let Ok(p) = plain_size(cipher) {
            prop_assert_eq!(cipher_size(p), cipher);
        }
    }
}

#[test]
fn round_trips_at_block_boundaries() {
    let k = key(1);
    for len in [0usize, 1, 65535, 65536, 65537, 3 * 65536, 200_000] {
        let plain = sample(len);
        let obj = seal_all(&FileKeys::new_file(&k, 1), &plain);
        assert_eq!(obj.len() as u64, cipher_size(len as u64));
        assert_eq!(open_all(&k, &obj).unwrap(), plain, "len {len}");
    }
}

#[test]
fn a_wrong_key_is_caught_by_the_commitment() {
    let obj = seal_all(&FileKeys::new_file(&key(1), 1), &sample(10));
    assert_eq!(open_all(&key(2), &obj), Err(FormatError::WrongKey));
}

#[test]
fn tampering_is_detected() {
    let k = key(9);
    let plain = sample(3 * 65536 + 100);
    let obj = seal_all(&FileKeys::new_file(&k, 1), &plain);
    let n = 4u64;
    let block = |o: &[u8], i: u64| {
        o[block_range(i, plain.len() as u64).start as usize
            ..block_range(i, plain.len() as u64).end as usize]
            .to_vec()
    };

    // A flipped bit in a block, in the header's covered part, in the commitment.
    for pos in [HEADER_LEN as usize + 20, 20, 40, obj.len() - 1] {
        let mut bad = obj.clone();
        bad[pos] ^= 1;
        assert!(open_all(&k, &bad).is_err(), "flip at {pos}");
    }
    // Truncated at a block boundary (the new last block is not marked last).
    let cut = block_range(2, plain.len() as u64).end as usize;
    assert_eq!(open_all(&k, &obj[..cut]), Err(FormatError::BadBlock(2)));
    // An appended block (the old last block is marked last but is not last).
    let mut longer = obj.clone();
    longer.extend_from_slice(&block(&obj, 0));
    assert!(open_all(&k, &longer).is_err());
    // Two blocks swapped.
    let mut swapped = obj[..HEADER_LEN as usize].to_vec();
    swapped.extend_from_slice(&block(&obj, 1));
    swapped.extend_from_slice(&block(&obj, 0));
    for i in 2..n {
        swapped.extend_from_slice(&block(&obj, i));
    }
    assert_eq!(open_all(&k, &swapped), Err(FormatError::BadBlock(0)));
    // A block spliced in from another object under the same key.
    let other = seal_all(&FileKeys::new_file(&k, 1), &plain);
    let mut spliced = obj[..HEADER_LEN as usize].to_vec();
    spliced.extend_from_slice(&block(&other, 0));
    for i in 1..n {
        spliced.extend_from_slice(&block(&obj, i));
    }
    assert_eq!(open_all(&k, &spliced), Err(FormatError::BadBlock(0)));
    // Another object's header in front of these blocks.
    let mut reheaded = other[..HEADER_LEN as usize].to_vec();
    reheaded.extend_from_slice(&obj[HEADER_LEN as usize..]);
    assert!(open_all(&k, &reheaded).is_err());
    // Not a sealfs object at all.
    assert_eq!(
        open_all(
            &k,
            b"plain text written by another tool, long enough to have a header"
        ),
        Err(FormatError::NotSealfs)
    );
}

#[test]
fn secrets_do_not_print() {
    assert_eq!(format!("{:?}", key(7)), "Secret(..)");
}

/// The worked examples of docs/FORMAT.md, parsed from the document itself: re-sealing with
/// the documented key, file id and nonces must give the documented bytes, and opening them
/// must give the documented plaintext.
#[test]
fn documented_test_vectors_hold() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/FORMAT.md")).unwrap();
    let block = doc
        .split("```vectors")
        .nth(1)
        .expect("a vectors block")
        .split("```")
        .next()
        .unwrap();
    let mut checked = 0;
    for vector in block.split("\n\n").filter(|v| v.contains("name")) {
        let field = |k: &str| {
            vector
                .lines()
                .find_map(|l| {
                    l.split_once('=')
                        .filter(|(a, _)| a.trim() == k)
                        .map(|(_, v)| v.trim())
                })
                .unwrap_or_else(|| panic!("{k} missing"))
        };
        let hexv = |k: &str| hex::decode(field(k).replace(' ', "")).unwrap();
        let data_key = Secret(hexv("data_key").try_into().unwrap());
        let file_id: [u8; 16] = hexv("file_id").try_into().unwrap();
        let version: u32 = field("key_version").parse().unwrap();
        let plain = match vector.lines().any(|l| l.starts_with("plaintext_hex")) {
            true => hexv("plaintext_hex"),
            false => {
                let len: usize = field("plaintext_len").parse().unwrap();
                (0..len).map(|i| (i % 251) as u8).collect()
            }
        };
        let nonces: Vec<[u8; 12]> = field("nonces")
            .split(',')
            .map(|n| hex::decode(n.trim()).unwrap().try_into().unwrap())
            .collect();
        let keys = FileKeys::with_id(&data_key, version, file_id);
        let mut obj = keys.header_bytes().to_vec();
        let n = block_count(plain.len() as u64);
        assert_eq!(nonces.len() as u64, n);
        for i in 0..n {
            let from = (i * BLOCK_PLAIN) as usize;
            let to = ((i + 1) * BLOCK_PLAIN).min(plain.len() as u64) as usize;
            keys.seal_with_nonce(
                i,
                i + 1 == n,
                &plain[from.min(to)..to],
                nonces[i as usize],
                &mut obj,
            );
        }
        assert_eq!(
            obj.len() as u64,
            field("object_len").parse::<u64>().unwrap()
        );
        if vector.contains("object_hex") {
            assert_eq!(
                hex::encode(&obj),
                field("object_hex").replace(' ', ""),
                "{}",
                field("name")
            );
        }
        use sha2::Digest;
        assert_eq!(
            hex::encode(sha2::Sha256::digest(&obj)),
            field("object_sha256"),
            "{}",
            field("name")
        );
        assert_eq!(open_all(&data_key, &obj).unwrap(), plain);
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} vectors found");
}

#[test]
#[ignore = "prints the vectors for docs/FORMAT.md"]
fn print_vectors() {
    use sha2::Digest;
    let data_key = Secret(core::array::from_fn(|i| i as u8));
    let file_id: [u8; 16] = core::array::from_fn(|i| 0xa0 + i as u8);
    for (name, plain) in [
        ("hello", b"hello, sealfs\n".to_vec()),
        ("empty", vec![]),
        ("two-blocks", (0..65541).map(|i| (i % 251) as u8).collect()),
    ] {
        let keys = FileKeys::with_id(&data_key, 1, file_id);
        let mut obj = keys.header_bytes().to_vec();
        let n = block_count(plain.len() as u64);
        for i in 0..n {
            let from = (i * BLOCK_PLAIN) as usize;
            let to = ((i + 1) * BLOCK_PLAIN).min(plain.len() as u64) as usize;
            keys.seal_with_nonce(
                i,
                i + 1 == n,
                &plain[from.min(to)..to],
                [0x10 + i as u8; 12],
                &mut obj,
            );
        }
        println!(
            "{name}: len {} sha {} commit {}",
            obj.len(),
            hex::encode(sha2::Sha256::digest(&obj)),
            hex::encode(keys.header().commitment)
        );
        if obj.len() < 200 {
            println!("{}", hex::encode(&obj));
        }
    }
}

#[test]
fn an_empty_block_after_a_full_last_block_is_not_a_size() {
    // 65536 bytes seal to one full block; 28 more bytes would parse as an empty block 1.
    let whole = cipher_size(BLOCK_PLAIN);
    assert_eq!(plain_size(whole), Ok(BLOCK_PLAIN));
    for blocks in 1..4u64 {
        let c = cipher_size(blocks * BLOCK_PLAIN) + BLOCK_OVERHEAD;
        assert_eq!(
            plain_size(c),
            Err(FormatError::BadSize(c)),
            "{blocks} blocks"
        );
    }
    // The header alone, and the header plus a bare empty block, of which only the latter is a
    // file (the empty one).
    assert_eq!(
        plain_size(HEADER_LEN),
        Err(FormatError::BadSize(HEADER_LEN))
    );
    assert_eq!(plain_size(HEADER_LEN + BLOCK_OVERHEAD), Ok(0));
}

#[test]
fn a_block_opened_in_its_own_buffer_matches_and_is_authenticated() {
    let keys = FileKeys::new_file(&key(4), 1);
    let plain = sample(2 * 65536 + 10);
    let size = plain.len() as u64;
    let obj = seal_all(&keys, &plain);
    let sealed = |i: u64| {
        let r = block_range(i, size);
        obj[r.start as usize..r.end as usize].to_vec()
    };
    for i in 0..3u64 {
        let last = i == 2;
        let want = &plain[(i * BLOCK_PLAIN) as usize..((i + 1) * BLOCK_PLAIN).min(size) as usize];
        assert_eq!(keys.open_block(i, last, &sealed(i)).unwrap(), want);
        assert_eq!(keys.open_block_within(i, last, sealed(i)).unwrap(), want);
        // Another index, the wrong last flag, a flipped bit, a cut tag: refused.
        assert!(keys.open_block_within(i + 1, last, sealed(i)).is_err());
        assert!(keys.open_block_within(i, !last, sealed(i)).is_err());
        let mut bad = sealed(i);
        bad[NONCE_LEN as usize + 3] ^= 1;
        assert_eq!(
            keys.open_block_within(i, last, bad),
            Err(FormatError::BadBlock(i))
        );
        let cut = sealed(i)[..BLOCK_OVERHEAD as usize - 1].to_vec();
        assert_eq!(
            keys.open_block_within(i, last, cut),
            Err(FormatError::BadBlock(i))
        );
    }
}
