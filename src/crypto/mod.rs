//! Client-side encryption: the object format (`format`, pure functions, no I/O).
//! Key management and the mount's use of the format build on it.

pub mod codec;
pub mod format;
pub mod keys;
pub mod mode;
