//! Hash-chained, append-only JSON-lines security event log and its verifier.
