//! Training and evaluation for crossglg.
