//! Client-side encryption: the object format (`format`, pure functions, no I/O), the codec
//! that maps a file's bytes to its object (`codec`), keyrings and the prefix's config object
//! (`keys`), the modes (`mode`), the key providers that wrap keyrings (`wrap`), and (format
//! version 2) encrypted names (`names`) and sealed attributes (`attrs`); `local`, the disk
//! cache's machine-local key.

pub mod attrs;
pub mod codec;
pub mod format;
pub mod keys;
pub mod local;
pub mod mode;
pub mod names;
pub mod wrap;

#[cfg(test)]
mod vectors_v2;
