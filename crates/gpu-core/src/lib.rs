//! gpu-core
