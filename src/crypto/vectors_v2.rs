//! Format 2's test vectors (docs/FORMAT.md, the `vectors-v2` block): names, sealed attributes
//! and the config MAC recomputed from the documented inputs and compared byte for byte, so a
//! decoder written from FORMAT.md alone can check itself against the same numbers.

use std::collections::BTreeMap;

use hkdf::Hkdf;
use sha2::Sha256;

use super::attrs::SealedAttrs;
use super::format::Secret;
use super::keys::{wrap_with_nonce, Keyring, Names, PrefixConfig, PrefixKey, PREFIX_KEY_VERSION};
use super::mode::{Mode, Wrapping};

fn seq(from: u8, n: usize) -> Vec<u8> {
    (0..n).map(|i| from + i as u8).collect()
}

fn hkdf<const N: usize>(ikm: &[u8], info: &str) -> [u8; N] {
    let mut out = [0u8; N];
    Hkdf::<Sha256>::new(None, ikm)
        .expand(info.as_bytes(), &mut out)
        .unwrap();
    out
}

/// Every value of the vectors, computed from the documented inputs, in the block's order.
fn computed() -> Vec<(String, String)> {
    let key_file = Secret(seq(0x00, 32).try_into().unwrap());
    let data_key = Secret(seq(0x20, 32).try_into().unwrap());
    let prefix_key = Secret(seq(0x40, 32).try_into().unwrap());
    let mut out: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, v: String| out.push((k.to_string(), v));
    put("key_file", hex::encode(key_file.0));
    put("data_key_1", hex::encode(data_key.0));
    put("prefix_key", hex::encode(prefix_key.0));
    put(
        "names_key",
        hex::encode(hkdf::<64>(&prefix_key.0, "sealfs v2 names")),
    );
    put(
        "attributes_key",
        hex::encode(hkdf::<32>(&prefix_key.0, "sealfs v2 attributes")),
    );
    put(
        "config_mac_key",
        hex::encode(hkdf::<32>(&prefix_key.0, "sealfs v2 config mac")),
    );
    let ring = Keyring::from_keys(1, BTreeMap::from([(1, data_key.clone())]))
        .unwrap()
        .with_prefix_key(PrefixKey::new(prefix_key.clone(), Names::Encrypted));
    let names = ring.name_cipher().unwrap();
    let docs = names.encrypt("", "docs");
    let report = names.encrypt("docs", "report.pdf");
    put("name(\"\", \"docs\")", docs.clone());
    put("name(\"docs\", \"report.pdf\")", report.clone());
    let rel_key = format!("{docs}/{report}");
    let attrs = SealedAttrs {
        mode: 0o100644,
        uid: 1000,
        gid: 100,
        mtime_secs: 1_700_000_000,
        mtime_nanos: 500_000_000,
        file_id: seq(0xa0, 16).try_into().unwrap(),
        ctime: Some((1_700_000_001, 250_000_000)),
        rdev: 0,
        xattrs: vec![("user.tag".into(), b"v".to_vec())],
    };
    let sealer = ring.attr_sealer().unwrap();
    let nonce: [u8; 12] = seq(0x80, 12).try_into().unwrap();
    put(
        "sealfs-attr(docs/report.pdf)",
        sealer.seal_with_nonce(&rel_key, &attrs, nonce),
    );
    // The 40-byte layout written before ctime, devices and extended attributes were stored
    // (same inputs, same nonce) still opens, to the attributes it holds.
    let legacy = "gIGCg4SFhoeIiYqLChfCMs6NaxF8B-bQ1aJFAepAGRek1qY5BT2YzVHFnod8ndHjWAOsz7nmznW9TV7HzTPnPuJ__jc";
    let opened = sealer.open(&rel_key, legacy).unwrap();
    let core = SealedAttrs {
        ctime: None,
        xattrs: Vec::new(),
        ..attrs.clone()
    };
    assert_eq!(opened, core);
    put("sealfs-attr-40(docs/report.pdf)", legacy.to_string());
    let data_nonce: [u8; 12] = seq(0x60, 12).try_into().unwrap();
    let prefix_nonce: [u8; 12] = seq(0x70, 12).try_into().unwrap();
    let config = PrefixConfig {
        sealfs: 2,
        encryption: Mode::Client,
        wrapping: Some(Wrapping::KeyFile),
        kms_key_id: None,
        names: Some(Names::Encrypted),
        current_key: 1,
        keys: vec![wrap_with_nonce(&key_file, (2, 1), &data_key, data_nonce)],
        prefix_key: Some(wrap_with_nonce(
            &key_file,
            (2, PREFIX_KEY_VERSION),
            &prefix_key,
            prefix_nonce,
        )),
        mac: None,
    }
    .sealed(&ring);
    put("keys[0].wrapped", config.keys[0].wrapped.clone());
    put(
        "prefix_key.wrapped",
        config.prefix_key.as_ref().unwrap().wrapped.clone(),
    );
    put("mac_input", hex::encode(config.mac_input()));
    put("mac", config.mac.clone().unwrap());
    // The config unwraps and authenticates with the key file alone.
    let back = PrefixConfig::from_json(&config.to_json()).unwrap();
    assert!(back.unwrap(&key_file).unwrap().same_as(&ring));
    out
}

#[test]
fn documented_format_2_vectors_hold() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/FORMAT.md")).unwrap();
    let block = doc
        .split("```vectors-v2")
        .nth(1)
        .expect("a vectors-v2 block in FORMAT.md")
        .split("```")
        .next()
        .unwrap();
    let documented: Vec<(String, String)> = block
        .lines()
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let want = computed();
    if documented != want {
        let text: Vec<String> = want.iter().map(|(k, v)| format!("{k} = {v}")).collect();
        panic!(
            "FORMAT.md's vectors-v2 differ; computed:\n{}",
            text.join("\n")
        );
    }
}
