//! Mesh PKI and probes (being written).
