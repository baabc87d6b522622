//! sealfs: mount an S3 bucket (or a prefix of one) as a local directory.
//!
//! Dependency direction, one way only:
//! `cli` -> `mount` (wiring) -> `fuse` (the only module that touches fuser) -> `fs` (async
//! filesystem logic) -> `inode` / `read` / `write` -> `store` (the only module that touches
//! aws-sdk-s3). `sys` holds the few raw system calls of process setup.

pub mod cache;
pub mod cli;
pub mod commands;
pub mod control;
pub mod crypto;
pub mod dirindex;
pub mod fs;
pub mod fuse;
pub mod inode;
pub mod kms;
pub mod layout;
pub mod meta;
pub mod mount;
pub mod read;
pub mod setup;
pub mod store;
pub mod sys;
pub mod tools;
pub mod write;
