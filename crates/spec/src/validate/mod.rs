//! Validation in two passes, each reporting every problem it finds.
//!
//! 1. Structural: the parsed tree is checked against the JSON schema derived from the types in
//!    [`crate::model`] (unknown fields, wrong types, bad enum values, missing fields). Messages
//!    are written here from the schema, not taken from the validator, so they read the same as
//!    the semantic ones and can suggest the field or value the user probably meant.
//! 2. Semantic: the rules of DESIGN.md §2 on the typed fleet (names, CIDRs and their overlaps,
//!    mesh IDs, zones, replicas, versions, Pod Security, providers).
//!
//! [`structural`] is the first pass and [`semantic`] the second; the release table the
//! semantic pass checks versions against lives in [`crate::releases`].

mod rollout;
mod semantic;
mod stack;
mod structural;

pub use semantic::parse_cidr;
pub(crate) use semantic::semantic;
pub(crate) use structural::{fleet_schema, structural};
