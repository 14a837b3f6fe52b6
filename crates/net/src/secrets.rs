//! The links' secrets and allocations, generated once and kept beside the fleet file in
//! `meshfleet.net.json` (mode 0600, written atomically): one pre-shared key per VPN tunnel and
//! one inside /30 per tunnel. Re-runs reuse them, so both clouds keep agreeing; they are never
//! printed or rendered (`Debug` shows only the tunnel names).

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::NetError;

/// The file name, beside the fleet file.
pub const FILE: &str = "meshfleet.net.json";

/// One tunnel's shared settings.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TunnelSecret {
    /// The pre-shared key both ends use.
    pub psk: String,
    /// The tunnel's inside /30 in 169.254.0.0/16: AWS takes the first host, GCP the second.
    pub inside_cidr: Ipv4Net,
}

/// Everything kept in [`FILE`].
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secrets {
    /// By tunnel name (e.g. `mf-hackathon-eu-west-1-t0`).
    pub tunnels: BTreeMap<String, TunnelSecret>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("tunnels", &self.tunnels.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The first inside /30 handed out; AWS rejects 169.254.0.0/30 to 169.254.5.0/30 and
/// 169.254.169.252/30 for tunnel inside CIDRs (EC2 API reference, `VpnTunnelOptionsSpecification.TunnelInsideCidr`),
/// so allocation starts above them and skips the last.
const FIRST_INSIDE: u32 = u32::from_be_bytes([169, 254, 16, 0]);
const RESERVED_INSIDE: u32 = u32::from_be_bytes([169, 254, 169, 252]);
const LAST_INSIDE: u32 = u32::from_be_bytes([169, 254, 255, 252]);

/// A fresh pre-shared key: 40 characters of letters and digits, starting with a letter (AWS
/// accepts 8–64 of letters, digits, `.` and `_`, not starting with `0`; GCP any printable).
fn psk(rng: &SystemRandom) -> Result<String, NetError> {
    const ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 40];
    rng.fill(&mut bytes).map_err(|_| NetError::Random)?;
    Ok(bytes
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let set = if i == 0 { ALPHA } else { ALNUM };
            // 256 is not a multiple of 52 or 62: the slight bias costs well under a bit of
            // the key's ~238 bits.
            set[*b as usize % set.len()] as char
        })
        .collect())
}

impl Secrets {
    /// Read `dir/meshfleet.net.json`; empty when the file does not exist.
    pub fn load(dir: &Path) -> Result<Self, NetError> {
        let path = dir.join(FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| NetError::Secrets {
                path,
                why: format!("not a meshfleet secrets file: {e}"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(NetError::Secrets {
                path,
                why: e.to_string(),
            }),
        }
    }

    /// Make sure every tunnel in `names` has a key and an inside /30 (new ones are generated,
    /// existing ones kept); returns how many were added.
    pub fn ensure(&mut self, names: &[String]) -> Result<usize, NetError> {
        let rng = SystemRandom::new();
        let mut added = 0;
        for n in names {
            if self.tunnels.contains_key(n) {
                continue;
            }
            let inside = self.free_inside().ok_or(NetError::InsideExhausted)?;
            self.tunnels.insert(
                n.clone(),
                TunnelSecret {
                    psk: psk(&rng)?,
                    inside_cidr: inside,
                },
            );
            added += 1;
        }
        Ok(added)
    }

    fn free_inside(&self) -> Option<Ipv4Net> {
        let used: Vec<u32> = self
            .tunnels
            .values()
            .map(|t| u32::from(t.inside_cidr.network()))
            .collect();
        (FIRST_INSIDE..=LAST_INSIDE)
            .step_by(4)
            .filter(|a| *a != RESERVED_INSIDE)
            .find(|a| !used.contains(a))
            .and_then(|a| Ipv4Net::new(a.into(), 30).ok())
    }

    /// Write `dir/meshfleet.net.json` atomically with mode 0600: a temporary file in the same
    /// directory, created 0600, synced, then renamed over the old one.
    pub fn save(&self, dir: &Path) -> Result<PathBuf, NetError> {
        let path = dir.join(FILE);
        let tmp = dir.join(format!(".{FILE}.tmp"));
        let err = |why: String| NetError::Secrets {
            path: path.clone(),
            why,
        };
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| err(e.to_string()))?;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(|e| err(e.to_string()))?;
        #[cfg(unix)]
        {
            // A stale temporary file keeps its old mode: set it again.
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| err(e.to_string()))?;
        }
        f.write_all(&bytes).map_err(|e| err(e.to_string()))?;
        f.sync_all().map_err(|e| err(e.to_string()))?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(|e| err(e.to_string()))?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_generated_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Secrets::load(dir.path()).unwrap();
        assert!(s.tunnels.is_empty());
        let names: Vec<String> = (0..4).map(|i| format!("t{i}")).collect();
        assert_eq!(s.ensure(&names).unwrap(), 4);
        let path = s.save(dir.path()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let mut again = Secrets::load(dir.path()).unwrap();
        assert_eq!(again, s);
        assert_eq!(again.ensure(&names).unwrap(), 0, "nothing new on a re-run");
        assert_eq!(again, s);
        // Keys differ per tunnel, fit both clouds, and inside ranges do not overlap.
        let t: Vec<&TunnelSecret> = s.tunnels.values().collect();
        for (i, a) in t.iter().enumerate() {
            assert_eq!(a.psk.len(), 40);
            assert!(a.psk.chars().next().unwrap().is_ascii_alphabetic());
            assert!(a.psk.chars().all(|c| c.is_ascii_alphanumeric()));
            assert_eq!(a.inside_cidr.prefix_len(), 30);
            for b in &t[i + 1..] {
                assert_ne!(a.psk, b.psk);
                assert_ne!(a.inside_cidr, b.inside_cidr);
            }
        }
        assert_eq!(
            s.tunnels["t0"].inside_cidr.to_string(),
            "169.254.16.0/30",
            "allocation starts above AWS's reserved ranges"
        );
        // Never in Debug output.
        assert!(!format!("{s:?}").contains(&s.tunnels["t0"].psk));
    }

    #[test]
    fn a_broken_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), "not json").unwrap();
        let e = Secrets::load(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains(FILE) && e.contains("not a meshfleet secrets file"),
            "{e}"
        );
    }
}
