//! Compliance of the collectors (below).
