//! sealfs: mount an S3 bucket (or a prefix of one) as a local directory.
//!
//! Dependency direction, one way only:
//! `cli` (arguments -> typed configs; the only user of clap) and `commands` -> `mount` (the
//! one wiring point: `mount::build` makes store, keyring and filesystem; `mount::Connect` makes
//! stores for the mount and the tools) -> `fuse` (the only module that touches fuser) -> `fs`
//! (async filesystem logic) -> `inode` / `read` / `write` / `cache` / `dirindex` -> `layout`
//! (paths <-> keys), `meta` (attributes <-> object metadata), `crypto` (format, codec,
//! keyrings, modes, key providers; `kms` implements the KMS one) and `store` (the only module
//! that touches aws-sdk-s3); `body` (an object body kept in the segments it arrived in) is a leaf
//! both of those use. `setup` and `tools` serve `mount` and `commands`; `progress` shows how far a tool got. `sys` holds the
//! few raw system calls of process setup.

pub mod body;
pub mod cache;
pub mod cli;
pub mod commands;
pub mod control;
pub mod crypto;
pub mod dirindex;
pub mod doctor;
pub mod fs;
pub mod fuse;
pub mod inode;
pub mod kms;
pub mod layout;
pub mod meta;
pub mod metrics;
pub mod migrate;
pub mod mount;
pub mod progress;
pub mod read;
pub mod sdk;
pub mod session;
pub mod setup;
pub mod store;
pub mod sys;
pub mod tools;
pub mod write;
