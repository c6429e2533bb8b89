//! Compliance cases of the API sinks (below).
