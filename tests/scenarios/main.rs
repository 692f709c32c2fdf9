//! Scenarios through the `phoenix-gpu` binary.
