//! The releases meshfleet knows: the support matrix (which Talos lines, which Kubernetes minors
//! per Talos line, which Cilium lines) and, per line, the newest patch release known when this
//! meshfleet was built.
//!
//! Why a table: the Talos image-factory URL, the GCE image and the AMI name
//! `talos-<version>-<region>-amd64` of a release that does not exist only fail much later, far
//! from the fleet file (REAL-STACK.md §9). Patch releases of both projects are numbered without
//! gaps, so "newest known patch of the line" is enough to tell a real release from a typo;
//! a newer patch than the table knows is only a warning (it may have been released since),
//! while a Talos ↔ Kubernetes pair outside the support matrix stays an error.
//!
//! Sources, read at the tags named:
//! - Talos: the release tags of `siderolabs/talos` (`v1.12.0`…`v1.12.11`, `v1.13.0`…`v1.13.9`;
//!   v1.14 has only pre-releases, up to `v1.14.0-rc.1`).
//! - Kubernetes: the newest `k8s.io/api v0.<minor>.<patch>` a released upstream module depends
//!   on (a module can only depend on a published release), and the default version Talos ships:
//!   1.30.5 (`kubernetes-sigs/cluster-api-provider-aws:go.mod@v2.7.0`), 1.31.3
//!   (`kubernetes-sigs/cluster-api-addon-provider-helm:go.mod@v0.3.0`), 1.32.4
//!   (`siderolabs/talos:go.mod@v1.9.6`), 1.33.6 (`siderolabs/talos:go.mod@v1.10.8`), 1.34.8
//!   (`kubernetes-sigs/cluster-api-provider-gcp:go.mod@v1.12.0`), 1.35.4
//!   (`siderolabs/talos:pkg/machinery/constants/constants.go@v1.12.11`,
//!   `DefaultKubernetesVersion`), 1.36.3 (the same constant `@v1.13.9`).
//! - The matrix: `SupportedKubernetesVersions = 6` minors ending at `DefaultKubernetesVersion`
//!   (`siderolabs/talos:pkg/machinery/constants/constants.go@v1.13.9`: 1.36 → 1.31–1.36;
//!   `@v1.12.11`: 1.35 → 1.30–1.35).

use crate::model::Version;

/// The version matrix this release supports.
pub struct SupportedVersions;

impl SupportedVersions {
    /// Talos minor lines meshfleet renders for (all in the v1alpha1 patch form; 1.14+ may opt
    /// into the multi-document form).
    pub const TALOS_MINORS: std::ops::RangeInclusive<u32> = 12..=15;
    /// Cilium minor lines meshfleet renders values for.
    pub const CILIUM_MINORS: std::ops::RangeInclusive<u32> = 18..=19;

    /// Kubernetes minors a Talos 1.x line supports: six minors ending at x + 23 (Talos support
    /// matrix: 1.11 → 1.29–1.34, 1.12 → 1.30–1.35, 1.13 → 1.31–1.36).
    pub fn kubernetes_for_talos(talos_minor: u32) -> std::ops::RangeInclusive<u32> {
        (talos_minor + 18)..=(talos_minor + 23)
    }
}

/// One release line and the newest patch of it meshfleet knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownRelease {
    /// Major version.
    pub major: u32,
    /// Minor version (the line).
    pub minor: u32,
    /// Newest known patch; every patch from 0 up to it exists.
    pub newest_patch: u32,
}

impl KnownRelease {
    /// The newest known release of this line.
    pub fn newest(self) -> Version {
        Version {
            major: self.major,
            minor: self.minor,
            patch: self.newest_patch,
        }
    }
}

const fn line(major: u32, minor: u32, newest_patch: u32) -> KnownRelease {
    KnownRelease {
        major,
        minor,
        newest_patch,
    }
}

/// Talos lines with releases (see the module documentation for the sources).
pub const TALOS_RELEASES: &[KnownRelease] = &[line(1, 12, 11), line(1, 13, 9)];

/// Kubernetes lines with releases (see the module documentation for the sources).
pub const KUBERNETES_RELEASES: &[KnownRelease] = &[
    line(1, 30, 5),
    line(1, 31, 3),
    line(1, 32, 4),
    line(1, 33, 6),
    line(1, 34, 8),
    line(1, 35, 4),
    line(1, 36, 3),
];

/// What the table says about a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// A release meshfleet knows.
    Known,
    /// A newer patch than the newest known one of its line.
    UnknownPatch {
        /// The newest known release of the same line.
        newest: Version,
    },
    /// A line with no release meshfleet knows.
    UnknownLine {
        /// The newest known release of any line.
        newest: Version,
    },
}

fn lookup(table: &[KnownRelease], v: Version) -> Release {
    match table
        .iter()
        .find(|l| l.major == v.major && l.minor == v.minor)
    {
        Some(l) if v.patch <= l.newest_patch => Release::Known,
        Some(l) => Release::UnknownPatch { newest: l.newest() },
        None => Release::UnknownLine {
            newest: table.iter().map(|l| l.newest()).max().unwrap_or(Version {
                major: 0,
                minor: 0,
                patch: 0,
            }),
        },
    }
}

/// Is `v` a Talos release meshfleet knows?
pub fn known_talos(v: Version) -> Release {
    lookup(TALOS_RELEASES, v)
}

/// Is `v` a Kubernetes release meshfleet knows?
pub fn known_kubernetes(v: Version) -> Release {
    lookup(KUBERNETES_RELEASES, v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).expect("version")
    }

    #[test]
    fn patches_up_to_the_newest_are_known() {
        assert_eq!(known_talos(v("v1.13.0")), Release::Known);
        assert_eq!(known_talos(v("v1.13.9")), Release::Known);
        assert_eq!(
            known_talos(v("v1.13.99")),
            Release::UnknownPatch {
                newest: v("v1.13.9")
            }
        );
        assert_eq!(
            known_talos(v("v1.14.0")),
            Release::UnknownLine {
                newest: v("v1.13.9")
            }
        );
        assert_eq!(known_kubernetes(v("v1.35.4")), Release::Known);
        assert_eq!(
            known_kubernetes(v("v1.35.5")),
            Release::UnknownPatch {
                newest: v("v1.35.4")
            }
        );
    }

    #[test]
    fn every_supported_pair_of_a_released_talos_line_has_released_kubernetes_lines() {
        for t in TALOS_RELEASES {
            for minor in SupportedVersions::kubernetes_for_talos(t.minor) {
                assert!(
                    KUBERNETES_RELEASES.iter().any(|k| k.minor == minor),
                    "Kubernetes 1.{minor} (for Talos 1.{}) is missing from the table",
                    t.minor
                );
            }
        }
    }
}
