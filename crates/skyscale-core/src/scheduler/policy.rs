//! The scheduler's decisions, as pure functions over plain data: may an invocation start,
//! which warm or generic sandbox it gets, which idle sandboxes give way to it, when the pool
//! boots another generic sandbox and when an idle sandbox has expired.
//!
//! Nothing here does I/O, takes a lock, awaits or reads a clock (callers pass `now`). The
//! scheduler ([`super`]) keeps the bookkeeping under its mutex, asks these functions and
//! applies their answers; the tests below pin every rule without a sandbox.

use std::time::{Duration, Instant};

use skyscale_types::FunctionName;

use super::{Limits, Shape};
use crate::session::PoolKey;
use crate::{CoreError, Throttle};

/// Why an invocation may not start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The function's reserved concurrency is 0: it is disabled.
    Disabled,
    /// The function already runs as many invocations as its reserved concurrency.
    AtReservedConcurrency(u32),
    /// Every sandbox the host may have (`max_sandboxes`) is busy.
    HostSandboxes(usize),
    /// Busy sandboxes hold so much of the memory budget (MiB) that one more does not fit.
    HostMemory(u64),
}

impl Refusal {
    /// The caller's 429 for an invocation of `function`, naming the limit.
    pub fn into_error(self, function: &FunctionName) -> CoreError {
        let (limit, message) = match self {
            Refusal::Disabled => (
                Throttle::ReservedConcurrency,
                format!("function {function} is disabled: its reserved concurrency is 0"),
            ),
            Refusal::AtReservedConcurrency(n) => (
                Throttle::ReservedConcurrency,
                format!("function {function} is at its reserved concurrency of {n}"),
            ),
            Refusal::HostSandboxes(max) => (
                Throttle::Host,
                format!("the host is at its limit of {max} sandboxes and all of them are busy"),
            ),
            Refusal::HostMemory(budget) => (
                Throttle::Host,
                format!(
                    "the host's sandbox memory budget of {budget} MB is in use by busy sandboxes"
                ),
            ),
        };
        CoreError::TooManyRequests { limit, message }
    }
}

/// May one more invocation of a function start while `busy` of its invocations run, given
/// its reserved concurrency? Only the function's own reservation counts here: other
/// functions' reservations hold nothing back from it. The host's sandbox cap and memory
/// budget, shared by all functions, are [`make_room`]'s.
pub(crate) fn admit(busy: u32, reserved: Option<u32>) -> Result<(), Refusal> {
    match reserved {
        Some(0) => Err(Refusal::Disabled),
        Some(n) if busy >= n => Err(Refusal::AtReservedConcurrency(n)),
        _ => Ok(()),
    }
}

/// Whether an idle sandbox of the function, initialised for `key` (`None`: never), must go
/// when an invocation of `wanted` looks for a warm one: a sandbox of another revision of
/// the same version (`$LATEST` or a published one) can never serve again. Sandboxes of the
/// function's other versions stay.
pub(crate) fn is_stale(key: Option<&PoolKey>, wanted: &PoolKey) -> bool {
    key.is_none_or(|k| k.version == wanted.version && k != wanted)
}

/// Which of a function's idle sandboxes (their keys in the order they were put back)
/// serves an invocation of `wanted`: the most recently put back of exactly that key.
pub(crate) fn pick_warm<'a>(
    mut keys: impl DoubleEndedIterator<Item = Option<&'a PoolKey>> + ExactSizeIterator,
    wanted: &PoolKey,
) -> Option<usize> {
    keys.rposition(|k| k == Some(wanted))
}

/// Which generic sandbox (an index into the pool, oldest first) an invocation of a function
/// of `shape` gets when no warm one is idle: the oldest, whose pre-started runtime has had
/// the most time to get ready. None when the pool is empty or the function's shape is not
/// the generic one (what a sandbox boots with cannot change, so such a function boots its
/// own).
pub(crate) fn pick_generic(shape: Shape, generic: Shape, pooled: usize) -> Option<usize> {
    (shape == generic && pooled > 0).then_some(0)
}

/// An idle sandbox as eviction sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IdleSandbox {
    /// When its last invocation ended.
    pub last_used: Instant,
    /// The memory it is charged, MiB.
    pub charged_mb: u32,
}

/// What eviction sees of the host. Every idle and generic sandbox listed is also counted in
/// `live` and `used_mb`.
#[derive(Debug, Clone)]
pub(crate) struct Occupancy<K> {
    /// Sandboxes counted against the limits: generic, idle, busy and booting.
    pub live: usize,
    /// The memory charged to them, MiB.
    pub used_mb: u64,
    /// The idle sandboxes of each function, each list in the order they were put back.
    pub idle: Vec<(K, Vec<IdleSandbox>)>,
    /// The charges of the generic sandboxes, oldest first.
    pub generic_mb: Vec<u32>,
}

/// One idle sandbox to destroy to make room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Eviction<K> {
    /// The first of this function's idle list.
    Idle(K),
    /// The newest generic sandbox.
    Generic,
}

/// The idle sandboxes to evict, in order, so that one more sandbox charged `memory_mb` fits
/// under the host's sandbox cap and memory budget; none when it fits already.
///
/// Function sandboxes go first, least recently used first across all functions (the caller's
/// own idle sandboxes of other versions included). A function's candidate is the first of
/// its list, the one put back longest ago; between candidates used at the same instant, the
/// function listed first in `idle` goes. Generic sandboxes go last, newest first (the oldest
/// is the next one handed out).
///
/// Refuses, evicting nothing, when even evicting every idle sandbox would not make room:
/// busy sandboxes alone fill the cap or hold too much of the budget.
pub(crate) fn make_room<K: Clone>(
    occupancy: &Occupancy<K>,
    memory_mb: u32,
    limits: &Limits,
) -> Result<Vec<Eviction<K>>, Refusal> {
    let Occupancy {
        live,
        used_mb,
        idle,
        generic_mb,
    } = occupancy;
    let idle_count = idle.iter().map(|(_, list)| list.len()).sum::<usize>() + generic_mb.len();
    let idle_mb: u64 = idle
        .iter()
        .flat_map(|(_, list)| list.iter().map(|s| s.charged_mb))
        .chain(generic_mb.iter().copied())
        .map(u64::from)
        .sum();
    if live - idle_count.min(*live) >= limits.max_sandboxes {
        return Err(Refusal::HostSandboxes(limits.max_sandboxes));
    }
    let need = u64::from(memory_mb);
    if used_mb.saturating_sub(idle_mb) + need > limits.memory_budget_mb {
        return Err(Refusal::HostMemory(limits.memory_budget_mb));
    }
    let (mut live, mut used_mb) = (*live, *used_mb);
    // Per function, the index of the first sandbox not evicted yet.
    let mut first = vec![0usize; idle.len()];
    let mut generic_left = generic_mb.len();
    let mut evictions = Vec::new();
    while live >= limits.max_sandboxes || used_mb + need > limits.memory_budget_mb {
        let lru = idle
            .iter()
            .enumerate()
            .filter_map(|(i, (_, list))| list.get(first[i]).map(|s| (i, s.last_used)))
            .min_by_key(|&(_, last_used)| last_used);
        let charged_mb = if let Some((i, _)) = lru {
            let (function, list) = &idle[i];
            let charged_mb = list[first[i]].charged_mb;
            first[i] += 1;
            evictions.push(Eviction::Idle(function.clone()));
            charged_mb
        } else if generic_left > 0 {
            generic_left -= 1;
            evictions.push(Eviction::Generic);
            generic_mb[generic_left]
        } else {
            break;
        };
        live = live.saturating_sub(1);
        used_mb = used_mb.saturating_sub(u64::from(charged_mb));
    }
    Ok(evictions)
}

/// Whether the pool refiller boots another generic sandbox: the pool, ready and booting
/// together, is below `warm_pool_size`, and one more generic sandbox fits under the host's
/// sandbox cap and memory budget without evicting anything.
pub(crate) fn should_boot_generic(
    pooled: usize,
    booting: usize,
    live: usize,
    used_mb: u64,
    limits: &Limits,
) -> bool {
    let fits = live < limits.max_sandboxes
        && used_mb + u64::from(limits.generic_memory_mb) <= limits.memory_budget_mb;
    pooled + booting < limits.warm_pool_size && fits
}

/// Whether an idle sandbox last used at `last_used` has been idle longer than `keep_alive`
/// at `now`.
pub(crate) fn expired(last_used: Instant, now: Instant, keep_alive: Duration) -> bool {
    now.duration_since(last_used) > keep_alive
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_sandboxes: usize, memory_budget_mb: u64) -> Limits {
        Limits {
            max_sandboxes,
            memory_budget_mb,
            ..Limits::default()
        }
    }

    fn name(s: &str) -> FunctionName {
        FunctionName::parse(s).expect("valid name")
    }

    fn key(function: &str, revision: u64, version: Option<u64>) -> PoolKey {
        PoolKey {
            function: name(function),
            revision,
            version,
        }
    }

    /// An idle sandbox last used `secs` after `t0`.
    fn idle(t0: Instant, secs: u64, charged_mb: u32) -> IdleSandbox {
        IdleSandbox {
            last_used: t0 + Duration::from_secs(secs),
            charged_mb,
        }
    }

    fn occupancy(
        busy: usize,
        busy_mb: u64,
        idle: Vec<(&'static str, Vec<IdleSandbox>)>,
        generic_mb: Vec<u32>,
    ) -> Occupancy<&'static str> {
        let idle_sandboxes = idle.iter().flat_map(|(_, l)| l);
        let live = busy + idle_sandboxes.clone().count() + generic_mb.len();
        let used_mb = busy_mb
            + idle_sandboxes.map(|s| u64::from(s.charged_mb)).sum::<u64>()
            + generic_mb.iter().map(|&m| u64::from(m)).sum::<u64>();
        Occupancy {
            live,
            used_mb,
            idle,
            generic_mb,
        }
    }

    #[test]
    fn without_a_reservation_any_number_may_run() {
        assert_eq!(admit(0, None), Ok(()));
        assert_eq!(admit(10_000, None), Ok(()));
    }

    #[test]
    fn throttles_at_the_reserved_concurrency() {
        assert_eq!(admit(0, Some(3)), Ok(()));
        assert_eq!(admit(2, Some(3)), Ok(()));
        assert_eq!(admit(3, Some(3)), Err(Refusal::AtReservedConcurrency(3)));
        // Lowered while more were running: still refused, not underflowed.
        assert_eq!(admit(5, Some(3)), Err(Refusal::AtReservedConcurrency(3)));
    }

    #[test]
    fn a_reservation_of_zero_disables_the_function() {
        assert_eq!(admit(0, Some(0)), Err(Refusal::Disabled));
        assert_eq!(admit(7, Some(0)), Err(Refusal::Disabled));
    }

    #[test]
    fn refusals_name_their_limit_and_the_function() {
        let f = name("resize");
        let cases = [
            (
                Refusal::Disabled,
                Throttle::ReservedConcurrency,
                "function resize is disabled: its reserved concurrency is 0",
            ),
            (
                Refusal::AtReservedConcurrency(4),
                Throttle::ReservedConcurrency,
                "function resize is at its reserved concurrency of 4",
            ),
            (
                Refusal::HostSandboxes(8),
                Throttle::Host,
                "the host is at its limit of 8 sandboxes and all of them are busy",
            ),
            (
                Refusal::HostMemory(1024),
                Throttle::Host,
                "the host's sandbox memory budget of 1024 MB is in use by busy sandboxes",
            ),
        ];
        for (refusal, want_limit, want_message) in cases {
            match refusal.into_error(&f) {
                CoreError::TooManyRequests { limit, message } => {
                    assert_eq!((limit, message.as_str()), (want_limit, want_message));
                }
                other => panic!("{refusal:?} became {other:?}"),
            }
        }
    }

    #[test]
    fn a_warm_sandbox_is_the_most_recently_put_back_of_the_same_revision() {
        let wanted = key("f", 2, None);
        let other_version = key("f", 1, Some(1));
        let keys = [
            Some(&wanted),
            Some(&other_version),
            Some(&wanted),
            Some(&other_version),
        ];
        assert_eq!(pick_warm(keys.into_iter(), &wanted), Some(2));
        assert_eq!(pick_warm([Some(&other_version)].into_iter(), &wanted), None);
        assert_eq!(pick_warm(std::iter::empty(), &wanted), None);
    }

    #[test]
    fn older_revisions_of_the_same_version_are_stale_other_versions_stay() {
        let latest_2 = key("f", 2, None);
        let latest_1 = key("f", 1, None);
        let v1 = key("f", 1, Some(1));
        let v2 = key("f", 2, Some(2));
        assert!(!is_stale(Some(&latest_2), &latest_2));
        assert!(is_stale(Some(&latest_1), &latest_2));
        assert!(!is_stale(Some(&v1), &latest_2));
        assert!(!is_stale(Some(&latest_1), &v2));
        assert!(!is_stale(Some(&v1), &v2));
        // A sandbox that was never initialised cannot serve anything.
        assert!(is_stale(None, &latest_2));
    }

    #[test]
    fn the_oldest_generic_sandbox_is_handed_out_to_generic_shapes_only() {
        let generic = Shape {
            network: false,
            tmp_mb: 512,
        };
        assert_eq!(pick_generic(generic, generic, 3), Some(0));
        assert_eq!(pick_generic(generic, generic, 0), None);
        let networked = Shape {
            network: true,
            ..generic
        };
        assert_eq!(pick_generic(networked, generic, 3), None);
        let bigger_tmp = Shape {
            tmp_mb: 1024,
            ..generic
        };
        assert_eq!(pick_generic(bigger_tmp, generic, 3), None);
    }

    #[test]
    fn nothing_is_evicted_while_one_more_fits() {
        let t0 = Instant::now();
        // 1 busy + 2 idle + 1 generic = 4 of 5 sandboxes, 512 of 1024 MiB.
        let occ = occupancy(
            1,
            128,
            vec![("a", vec![idle(t0, 0, 128), idle(t0, 1, 128)])],
            vec![128],
        );
        assert_eq!(make_room(&occ, 128, &limits(5, 1024)), Ok(vec![]));
        // Exactly filling the budget still fits.
        assert_eq!(make_room(&occ, 512, &limits(5, 1024)), Ok(vec![]));
    }

    #[test]
    fn the_memory_budget_evicts_the_least_recently_used_idle_sandbox() {
        let t0 = Instant::now();
        let occ = occupancy(
            0,
            0,
            vec![
                ("a", vec![idle(t0, 5, 256)]),
                ("b", vec![idle(t0, 1, 256)]),
                ("c", vec![idle(t0, 3, 256)]),
            ],
            vec![],
        );
        // 768 of 1024 used: 256 more fit, 512 need one sandbox gone, 768 two.
        let l = limits(100, 1024);
        assert_eq!(make_room(&occ, 256, &l), Ok(vec![]));
        assert_eq!(make_room(&occ, 512, &l), Ok(vec![Eviction::Idle("b")]));
        assert_eq!(
            make_room(&occ, 768, &l),
            Ok(vec![Eviction::Idle("b"), Eviction::Idle("c")])
        );
    }

    #[test]
    fn eviction_takes_a_function_s_sandboxes_in_the_order_they_were_put_back() {
        let t0 = Instant::now();
        let occ = occupancy(
            0,
            0,
            vec![
                ("a", vec![idle(t0, 1, 128), idle(t0, 4, 128)]),
                ("b", vec![idle(t0, 2, 128)]),
            ],
            vec![],
        );
        assert_eq!(
            make_room(&occ, 384, &limits(100, 384)),
            Ok(vec![
                Eviction::Idle("a"),
                Eviction::Idle("b"),
                Eviction::Idle("a")
            ])
        );
    }

    #[test]
    fn a_function_s_candidate_is_the_first_of_its_list_not_its_oldest() {
        // Lists are in the order sandboxes were put back, which is the order their
        // invocations ended but for races; eviction compares the first of each list only.
        let t0 = Instant::now();
        let occ = occupancy(
            0,
            0,
            vec![
                ("a", vec![idle(t0, 4, 128), idle(t0, 0, 128)]),
                ("b", vec![idle(t0, 2, 128)]),
            ],
            vec![],
        );
        assert_eq!(
            make_room(&occ, 128, &limits(100, 384)),
            Ok(vec![Eviction::Idle("b")])
        );
    }

    #[test]
    fn the_caller_s_own_idle_sandboxes_are_not_spared() {
        // `f` asks for room (its warm sandboxes of this revision were looked for first);
        // its idle sandbox of another version is the least recently used, so it goes.
        let t0 = Instant::now();
        let occ = occupancy(
            1,
            128,
            vec![("f", vec![idle(t0, 1, 128)]), ("g", vec![idle(t0, 2, 128)])],
            vec![],
        );
        assert_eq!(
            make_room(&occ, 128, &limits(100, 384)),
            Ok(vec![Eviction::Idle("f")])
        );
    }

    #[test]
    fn ties_go_to_the_function_listed_first() {
        let t0 = Instant::now();
        let a = ("a", vec![idle(t0, 1, 128)]);
        let b = ("b", vec![idle(t0, 1, 128)]);
        let l = limits(100, 256);
        let ab = occupancy(0, 0, vec![a.clone(), b.clone()], vec![]);
        assert_eq!(make_room(&ab, 128, &l), Ok(vec![Eviction::Idle("a")]));
        let ba = occupancy(0, 0, vec![b, a], vec![]);
        assert_eq!(make_room(&ba, 128, &l), Ok(vec![Eviction::Idle("b")]));
    }

    #[test]
    fn function_sandboxes_go_before_generic_ones_and_generic_ones_newest_first() {
        let t0 = Instant::now();
        // Generic sandboxes charged 128 (oldest) and 256 (newest): evicting the newest
        // alone makes room for 256; the oldest is kept for the next cold start.
        let occ = occupancy(0, 0, vec![("a", vec![idle(t0, 9, 128)])], vec![128, 256]);
        let l = limits(100, 512);
        assert_eq!(make_room(&occ, 128, &l), Ok(vec![Eviction::Idle("a")]));
        assert_eq!(
            make_room(&occ, 384, &l),
            Ok(vec![Eviction::Idle("a"), Eviction::Generic])
        );
        let only_generic = occupancy(0, 0, vec![], vec![128, 256]);
        assert_eq!(
            make_room(&only_generic, 256, &limits(100, 384)),
            Ok(vec![Eviction::Generic])
        );
    }

    #[test]
    fn the_sandbox_cap_evicts_until_one_more_sandbox_fits() {
        let t0 = Instant::now();
        // 1 busy + 2 idle = the cap of 3; memory is plentiful.
        let occ = occupancy(
            1,
            128,
            vec![("a", vec![idle(t0, 2, 128)]), ("b", vec![idle(t0, 1, 128)])],
            vec![],
        );
        assert_eq!(
            make_room(&occ, 128, &limits(3, 1 << 20)),
            Ok(vec![Eviction::Idle("b")])
        );
        // Below the cap nothing goes.
        assert_eq!(make_room(&occ, 128, &limits(4, 1 << 20)), Ok(vec![]));
        // A generic sandbox counts against the cap like any other.
        let generic = occupancy(2, 256, vec![], vec![128]);
        assert_eq!(
            make_room(&generic, 128, &limits(3, 1 << 20)),
            Ok(vec![Eviction::Generic])
        );
    }

    #[test]
    fn busy_sandboxes_at_the_cap_refuse_without_evicting() {
        let occ = occupancy(2, 256, vec![], vec![]);
        assert_eq!(
            make_room(&occ, 128, &limits(2, 1 << 20)),
            Err(Refusal::HostSandboxes(2))
        );
    }

    #[test]
    fn busy_memory_over_the_budget_refuses_even_with_idle_sandboxes() {
        let t0 = Instant::now();
        // 384 busy + 128 idle of 512: evicting the idle one frees only 128 < 256.
        let occ = occupancy(3, 384, vec![("a", vec![idle(t0, 0, 128)])], vec![]);
        assert_eq!(
            make_room(&occ, 256, &limits(100, 512)),
            Err(Refusal::HostMemory(512))
        );
        // 128 fits once the idle one goes.
        assert_eq!(
            make_room(&occ, 128, &limits(100, 512)),
            Ok(vec![Eviction::Idle("a")])
        );
    }

    #[test]
    fn the_sandbox_cap_is_checked_before_the_memory_budget() {
        let occ = occupancy(2, 2048, vec![], vec![]);
        assert_eq!(
            make_room(&occ, 128, &limits(2, 1024)),
            Err(Refusal::HostSandboxes(2))
        );
    }

    #[test]
    fn the_pool_boots_generic_sandboxes_up_to_its_size_when_they_fit() {
        let l = Limits {
            warm_pool_size: 2,
            max_sandboxes: 10,
            memory_budget_mb: 1024,
            generic_memory_mb: 128,
            ..Limits::default()
        };
        assert!(should_boot_generic(0, 0, 0, 0, &l));
        assert!(should_boot_generic(1, 0, 1, 128, &l));
        // Booting ones count towards the pool.
        assert!(!should_boot_generic(1, 1, 2, 256, &l));
        assert!(!should_boot_generic(2, 0, 2, 256, &l));
        // It never evicts: at the cap, or without 128 MiB left, it waits.
        assert!(!should_boot_generic(0, 0, 10, 0, &l));
        assert!(!should_boot_generic(0, 0, 5, 1024 - 127, &l));
        assert!(should_boot_generic(0, 0, 5, 1024 - 128, &l));
        let no_pool = Limits {
            warm_pool_size: 0,
            ..l
        };
        assert!(!should_boot_generic(0, 0, 0, 0, &no_pool));
    }

    #[test]
    fn an_idle_sandbox_expires_after_the_keep_alive() {
        let t0 = Instant::now();
        let keep_alive = Duration::from_secs(600);
        assert!(!expired(t0, t0, keep_alive));
        assert!(!expired(t0, t0 + keep_alive, keep_alive));
        assert!(expired(
            t0,
            t0 + keep_alive + Duration::from_nanos(1),
            keep_alive
        ));
    }
}
