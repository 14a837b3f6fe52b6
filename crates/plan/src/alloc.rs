//! Address arithmetic for the planner: CIDRs as integer ranges, a set of taken ranges, and the
//! first-fit search for a free block in a pool.
//!
//! IPv4 and IPv6 live in separate spaces (an IPv4 range and an IPv6 range never collide even
//! when their integers do). Taken ranges are kept merged, so the search skips over a whole run
//! of allocated blocks at once: planning hundreds of clusters stays fast.

use std::collections::BTreeMap;

use ipnet::IpNet;

/// An inclusive range of addresses of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Span {
    pub v6: bool,
    pub start: u128,
    pub end: u128,
}

impl Span {
    pub fn of(net: &IpNet) -> Self {
        match net {
            IpNet::V4(n) => Self {
                v6: false,
                start: u128::from(u32::from(n.network())),
                end: u128::from(u32::from(n.broadcast())),
            },
            IpNet::V6(n) => Self {
                v6: true,
                start: u128::from(n.network()),
                end: u128::from(n.broadcast()),
            },
        }
    }

    pub fn overlaps(&self, other: &Self) -> bool {
        self.v6 == other.v6 && self.start <= other.end && other.start <= self.end
    }
}

/// Host-bit mask of a block of `prefix` bits in the given family.
fn host_mask(v6: bool, prefix: u8) -> u128 {
    let all = if v6 { u128::MAX } else { u128::from(u32::MAX) };
    all.checked_shr(u32::from(prefix)).unwrap_or(0)
}

fn to_net(v6: bool, start: u128, prefix: u8) -> Option<IpNet> {
    if v6 {
        ipnet::Ipv6Net::new(std::net::Ipv6Addr::from(start), prefix)
            .ok()
            .map(IpNet::V6)
    } else {
        let addr = u32::try_from(start).ok()?;
        ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(addr), prefix)
            .ok()
            .map(IpNet::V4)
    }
}

/// Merged, disjoint taken ranges per family: start → end.
#[derive(Debug, Default)]
pub(crate) struct Taken {
    v4: BTreeMap<u128, u128>,
    v6: BTreeMap<u128, u128>,
}

impl Taken {
    fn map(&mut self, v6: bool) -> &mut BTreeMap<u128, u128> {
        if v6 { &mut self.v6 } else { &mut self.v4 }
    }

    /// Mark a range taken, merging it with every range it touches.
    pub fn insert(&mut self, s: Span) {
        let map = self.map(s.v6);
        let (mut start, mut end) = (s.start, s.end);
        let touching: Vec<(u128, u128)> = map
            .range(..=end.saturating_add(1))
            .rev()
            .take_while(|&(_, &e)| e.saturating_add(1) >= start)
            .map(|(&a, &b)| (a, b))
            .collect();
        for (a, b) in touching {
            map.remove(&a);
            start = start.min(a);
            end = end.max(b);
        }
        map.insert(start, end);
    }

    /// The taken range overlapping `s`, if any.
    fn overlapping(&self, s: Span) -> Option<(u128, u128)> {
        let map = if s.v6 { &self.v6 } else { &self.v4 };
        map.range(..=s.end)
            .next_back()
            .filter(|&(_, &e)| e >= s.start)
            .map(|(&a, &b)| (a, b))
    }

    /// The first free block of `prefix` bits inside `pool`, in address order.
    pub fn first_free(&self, pool: &IpNet, prefix: u8) -> Option<IpNet> {
        let p = Span::of(pool);
        let mask = host_mask(p.v6, prefix);
        let mut cand = p.start;
        loop {
            let cand_end = cand | mask;
            if cand_end > p.end {
                return None;
            }
            match self.overlapping(Span {
                v6: p.v6,
                start: cand,
                end: cand_end,
            }) {
                None => return to_net(p.v6, cand, prefix),
                Some((_, taken_end)) => {
                    if taken_end >= p.end {
                        return None;
                    }
                    // The first aligned block that starts after the taken range.
                    cand = (taken_end | mask).checked_add(1)?;
                }
            }
        }
    }
}

/// How many blocks of `prefix` bits a pool holds, as text (it may exceed any integer type).
pub(crate) fn block_count(pool: &IpNet, prefix: u8) -> String {
    let bits = u32::from(prefix.saturating_sub(pool.prefix_len()));
    match 1u128.checked_shl(bits) {
        Some(n) if bits < 128 => n.to_string(),
        _ => format!("2^{bits}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn first_fit_skips_taken_and_merges() {
        let pool = net("10.64.0.0/14");
        let mut t = Taken::default();
        assert_eq!(t.first_free(&pool, 16), Some(net("10.64.0.0/16")));
        t.insert(Span::of(&net("10.64.0.0/16")));
        t.insert(Span::of(&net("10.65.0.0/16")));
        assert_eq!(t.v4.len(), 1, "adjacent ranges merge");
        assert_eq!(t.first_free(&pool, 16), Some(net("10.66.0.0/16")));
        // A small pin in the middle of a block makes the whole block unusable.
        t.insert(Span::of(&net("10.66.3.0/24")));
        assert_eq!(t.first_free(&pool, 16), Some(net("10.67.0.0/16")));
        t.insert(Span::of(&net("10.67.0.0/16")));
        assert_eq!(t.first_free(&pool, 16), None);
        // Smaller blocks still fit around the pin.
        assert_eq!(t.first_free(&pool, 24), Some(net("10.66.0.0/24")));
    }

    #[test]
    fn families_do_not_collide() {
        let mut t = Taken::default();
        t.insert(Span::of(&net("::/96")));
        assert_eq!(t.first_free(&net("0.0.0.0/0"), 8), Some(net("0.0.0.0/8")));
        assert_eq!(t.first_free(&net("::/64"), 96), Some(net("::1:0:0/96")));
    }

    #[test]
    fn extremes_do_not_overflow() {
        let t = Taken::default();
        assert_eq!(t.first_free(&net("::/0"), 0), Some(net("::/0")));
        let mut t = Taken::default();
        t.insert(Span::of(&net("::/0")));
        assert_eq!(t.first_free(&net("::/0"), 128), None);
        let mut t = Taken::default();
        t.insert(Span::of(&net("255.255.255.0/24")));
        assert_eq!(t.first_free(&net("255.255.255.0/24"), 32), None);
        assert_eq!(block_count(&net("::/0"), 128), "2^128");
        assert_eq!(block_count(&net("10.64.0.0/10"), 16), "64");
    }
}
