//! Criterion benches: see `benches/`.
