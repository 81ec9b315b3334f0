//! Which worker an invocation goes to: pure functions over a snapshot of the live workers,
//! unit-tested. Every API node computes the same order from the same workers.

use std::collections::HashSet;

/// A live worker as routing sees it.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub address: String,
    pub name: String,
    pub generation: u64,
    pub capacity: u64,
    /// Function revisions it had idle warm sandboxes of at its last renewal:
    /// (function, revision, version).
    pub warm: HashSet<(String, u64, Option<u64>)>,
}

/// A stable 64-bit hash (FNV-1a with a final mix): the same on every node and build, unlike
/// std's randomly keyed hasher.
fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // A separator, so ("ab", "c") and ("a", "bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64's finaliser: FNV's low bits mix poorly on short keys.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Rendezvous (highest random weight) order of `members` for `function`: indexes, best
/// first. A worker joining or leaving moves only the functions it wins or won.
pub(crate) fn rendezvous(function: &str, members: &[Member]) -> Vec<usize> {
    let mut scored: Vec<(u64, &str, usize)> = members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            (
                stable_hash(&[function.as_bytes(), m.address.as_bytes()]),
                m.address.as_str(),
                i,
            )
        })
        .collect();
    // Ties (astronomically rare) are broken by address, so the order is total.
    scored.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    scored.into_iter().map(|(_, _, i)| i).collect()
}

/// The workers to try for one invocation, in order.
///
/// - A function with reserved concurrency goes to its home worker only, so one scheduler
///   enforces its reservation: the live worker holding its home (`home`: address and
///   generation), else the first in rendezvous order (which claims it on its first run).
/// - Otherwise a worker that listed an idle warm sandbox of this revision comes first (the
///   first such in rendezvous order), then the rendezvous order.
pub(crate) fn candidates(
    members: &[Member],
    function: &str,
    revision: u64,
    version: Option<u64>,
    reserved: bool,
    home: Option<(&str, u64)>,
) -> Vec<usize> {
    if reserved {
        if let Some((address, generation)) = home {
            if let Some(i) = members
                .iter()
                .position(|m| m.address == address && m.generation == generation)
            {
                return vec![i];
            }
        }
    }
    let mut order = rendezvous(function, members);
    if reserved {
        order.truncate(1);
        return order;
    }
    let key = (function.to_owned(), revision, version);
    if let Some(pos) = order.iter().position(|&i| members[i].warm.contains(&key)) {
        let warm = order.remove(pos);
        order.insert(0, warm);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(address: &str) -> Member {
        Member {
            address: address.into(),
            name: address.into(),
            generation: 1,
            capacity: 4,
            warm: HashSet::new(),
        }
    }

    #[test]
    fn the_order_does_not_depend_on_the_listing_order() {
        let a = vec![
            member("10.0.0.1:9"),
            member("10.0.0.2:9"),
            member("10.0.0.3:9"),
        ];
        let b = vec![a[2].clone(), a[0].clone(), a[1].clone()];
        for f in ["alpha", "beta", "gamma", "delta"] {
            let oa: Vec<&str> = rendezvous(f, &a)
                .iter()
                .map(|&i| a[i].address.as_str())
                .collect();
            let ob: Vec<&str> = rendezvous(f, &b)
                .iter()
                .map(|&i| b[i].address.as_str())
                .collect();
            assert_eq!(oa, ob, "{f}");
            assert_eq!(oa.len(), 3);
        }
    }

    #[test]
    fn functions_spread_and_a_leaving_worker_moves_only_its_own() {
        let all: Vec<Member> = (1..=3).map(|i| member(&format!("10.0.0.{i}:9"))).collect();
        let names: Vec<String> = (0..300).map(|i| format!("fn-{i}")).collect();
        let home = |ms: &[Member], f: &str| ms[rendezvous(f, ms)[0]].address.clone();
        let mut per = std::collections::HashMap::new();
        for n in &names {
            *per.entry(home(&all, n)).or_insert(0) += 1;
        }
        assert_eq!(per.len(), 3);
        assert!(per.values().all(|&c| c > 60), "{per:?}");
        let without: Vec<Member> = all[..2].to_vec();
        for n in &names {
            let before = home(&all, n);
            if before != all[2].address {
                assert_eq!(
                    home(&without, n),
                    before,
                    "{n} moved though its home stayed"
                );
            }
        }
    }

    #[test]
    fn warm_first_unless_reserved() {
        let mut ms = vec![member("10.0.0.1:9"), member("10.0.0.2:9")];
        let order = rendezvous("f", &ms);
        let second = order[1];
        ms[second].warm.insert(("f".into(), 7, None));
        assert_eq!(
            candidates(&ms, "f", 7, None, false, None),
            vec![second, order[0]]
        );
        // Another revision or version is not warm.
        assert_eq!(candidates(&ms, "f", 8, None, false, None), order);
        assert_eq!(candidates(&ms, "f", 7, Some(1), false, None), order);
        // Reserved: the home only: the live holder of its home, else the rendezvous first.
        assert_eq!(candidates(&ms, "f", 7, None, true, None), vec![order[0]]);
        let holder = ms[second].address.clone();
        assert_eq!(
            candidates(&ms, "f", 7, None, true, Some((&holder, 1))),
            vec![second]
        );
        // A home held by a generation that is not live is no home.
        assert_eq!(
            candidates(&ms, "f", 7, None, true, Some((&holder, 2))),
            vec![order[0]]
        );
        assert!(candidates(&[], "f", 7, None, false, None).is_empty());
    }
}
