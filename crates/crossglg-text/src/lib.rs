//! Text knowledge for crossglg.
