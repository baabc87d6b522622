//! Client-side encryption: the object format (`format`, pure functions, no I/O), the codec
//! that maps a file's bytes to its object (`codec`), keyrings and the prefix's config object
//! (`keys`), the modes (`mode`) and the key providers that wrap keyrings (`wrap`).

pub mod codec;
pub mod format;
pub mod keys;
pub mod mode;
pub mod wrap;
