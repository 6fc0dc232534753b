//! Models for crossglg.
