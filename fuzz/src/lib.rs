//! Helpers shared by the fuzz targets (input layouts) and by `seedgen` (which writes seeds in
//! the same layouts). Nothing here links libFuzzer.

pub mod format;
