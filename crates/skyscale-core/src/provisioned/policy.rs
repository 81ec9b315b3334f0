//! Provisioned concurrency's decisions, as pure functions over plain data (as
//! `scheduler/policy.rs`): whether a configuration may be put, how many sandboxes to start
//! or shed, how long to wait after a failed init, and what status a configuration has.
//! No I/O, no lock, no clock.

use std::time::Duration;

use skyscale_types::provisioned::ProvisionedStatus;

use crate::CoreError;

/// Longest wait between two attempts at a configuration whose sandboxes fail to initialise.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What a put is checked against (lambda-compatibility.md, "Provisioned concurrency").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PutCheck {
    /// Sandboxes asked for.
    pub requested: u32,
    /// The function's reserved concurrency.
    pub reserved: Option<u32>,
    /// What the function's other configurations (other qualifiers) ask for.
    pub same_function: u64,
    /// The account's concurrency: the host's sandbox cap.
    pub account_limit: u64,
    /// Every function's reserved concurrency, added up.
    pub reserved_total: u64,
    /// What the configurations of functions without a reservation ask for, this one's
    /// previous value left out.
    pub unreserved_provisioned: u64,
    /// The function's memory size, MiB.
    pub memory_mb: u32,
    /// What every other configuration's sandboxes take of the memory budget, MiB.
    pub memory_others_mb: u64,
    pub memory_budget_mb: u64,
}

/// Why a configuration may not be put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PutRefusal {
    /// More than the function's reserved concurrency (all its configurations together).
    OverReserved { reserved: u32, total: u64 },
    /// The account's unreserved concurrency would drop below its minimum.
    BelowUnreservedMinimum { minimum: u64 },
    /// The sandboxes would not fit in the host's memory budget.
    OverMemoryBudget { needed_mb: u64, budget_mb: u64 },
}

impl PutRefusal {
    pub fn into_error(self) -> CoreError {
        CoreError::InvalidParameter(match self {
            PutRefusal::OverReserved { reserved, total } => format!(
                "Requested Provisioned Concurrency should not be greater than the \
                 reservedConcurrentExecution for function: {total} requested in all, the \
                 function's reserved concurrency is {reserved}"
            ),
            PutRefusal::BelowUnreservedMinimum { minimum } => format!(
                "Specified ConcurrentExecutions for function decreases account's \
                 UnreservedConcurrentExecution below its minimum value of [{minimum}]."
            ),
            PutRefusal::OverMemoryBudget {
                needed_mb,
                budget_mb,
            } => format!(
                "provisioned sandboxes would take {needed_mb} MB of the host's sandbox memory \
                 budget of {budget_mb} MB (SKYSCALE_MEMORY_BUDGET_MB)"
            ),
        })
    }
}

/// The unreserved concurrency an account keeps at least: a tenth of its limit, rounded up
/// (Lambda keeps 100 of its default 1,000).
pub(crate) fn unreserved_minimum(account_limit: u64) -> u64 {
    account_limit.div_ceil(10)
}

/// May the configuration be put? Within a reservation, the function's configurations
/// together fit in it (the reservation was already taken from the account); without one,
/// they come out of the account's unreserved concurrency, which keeps its minimum. Either
/// way, every provisioned sandbox fits in the memory budget.
pub(crate) fn check_put(c: &PutCheck) -> Result<(), PutRefusal> {
    let requested = u64::from(c.requested);
    let total = c.same_function + requested;
    match c.reserved {
        Some(reserved) if total > u64::from(reserved) => {
            return Err(PutRefusal::OverReserved { reserved, total });
        }
        Some(_) => {}
        None => {
            let minimum = unreserved_minimum(c.account_limit);
            let taken = c.reserved_total + c.unreserved_provisioned + requested;
            if c.account_limit.saturating_sub(taken) < minimum || taken > c.account_limit {
                return Err(PutRefusal::BelowUnreservedMinimum { minimum });
            }
        }
    }
    let needed_mb = c.memory_others_mb + requested * u64::from(c.memory_mb);
    if needed_mb > c.memory_budget_mb {
        return Err(PutRefusal::OverMemoryBudget {
            needed_mb,
            budget_mb: c.memory_budget_mb,
        });
    }
    Ok(())
}

/// How many sandboxes to start for a version with `target` wanted and `have` (idle, busy
/// and starting) already: all that are missing, or one at a time while its inits fail (a
/// probe, so a broken function does not boot a crowd of sandboxes to fail).
pub(crate) fn to_start(target: u32, have: u32, failing: bool) -> u32 {
    let missing = target.saturating_sub(have);
    if failing {
        missing.min(1)
    } else {
        missing
    }
}

/// How many idle sandboxes to destroy when a version has `idle` and `busy` and wants
/// `target`: the surplus, as far as idle ones cover it (busy ones go when they finish).
pub(crate) fn surplus(target: u32, idle: u32, busy: u32) -> u32 {
    (idle + busy).saturating_sub(target).min(idle)
}

/// The wait before attempt `failures + 1` after `failures` failed inits in a row: 1 s,
/// doubling, at most [`MAX_BACKOFF`].
pub(crate) fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    Duration::from_secs(1u64 << exp).min(MAX_BACKOFF)
}

/// A configuration's status: `FAILED` when its qualifier cannot be provisioned
/// (`unresolved`) or its last init failed and it is not complete; `READY` when as many
/// sandboxes are initialised as requested; else `IN_PROGRESS`.
pub(crate) fn status(
    requested: u32,
    ready: u32,
    unresolved: Option<&str>,
    failure: Option<&str>,
) -> (ProvisionedStatus, Option<String>) {
    if let Some(reason) = unresolved {
        return (ProvisionedStatus::Failed, Some(reason.to_owned()));
    }
    if ready >= requested {
        return (ProvisionedStatus::Ready, None);
    }
    match failure {
        Some(reason) => (ProvisionedStatus::Failed, Some(reason.to_owned())),
        None => (ProvisionedStatus::InProgress, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> PutCheck {
        PutCheck {
            requested: 2,
            reserved: None,
            same_function: 0,
            account_limit: 20,
            reserved_total: 0,
            unreserved_provisioned: 0,
            memory_mb: 128,
            memory_others_mb: 0,
            memory_budget_mb: 4096,
        }
    }

    #[test]
    fn a_reservation_bounds_the_functions_configurations_together() {
        let c = PutCheck {
            reserved: Some(3),
            same_function: 1,
            ..check()
        };
        assert_eq!(check_put(&c), Ok(()));
        let over = PutCheck { requested: 3, ..c };
        assert_eq!(
            check_put(&over),
            Err(PutRefusal::OverReserved {
                reserved: 3,
                total: 4
            })
        );
        let msg = PutRefusal::OverReserved {
            reserved: 3,
            total: 4,
        }
        .into_error()
        .to_string();
        assert!(msg.contains("reservedConcurrentExecution"), "{msg}");
        // Within a reservation the account was charged already.
        let full = PutCheck {
            reserved: Some(3),
            reserved_total: 18,
            requested: 3,
            ..check()
        };
        assert_eq!(check_put(&full), Ok(()));
    }

    #[test]
    fn the_account_keeps_a_tenth_unreserved() {
        assert_eq!(unreserved_minimum(20), 2);
        assert_eq!(unreserved_minimum(256), 26);
        assert_eq!(unreserved_minimum(1), 1);
        let ok = PutCheck {
            requested: 8,
            reserved_total: 5,
            unreserved_provisioned: 5,
            ..check()
        };
        assert_eq!(check_put(&ok), Ok(()), "20 - 18 = 2 left");
        let over = PutCheck { requested: 9, ..ok };
        assert_eq!(
            check_put(&over),
            Err(PutRefusal::BelowUnreservedMinimum { minimum: 2 })
        );
        let far = PutCheck {
            requested: 40,
            ..check()
        };
        assert!(check_put(&far).is_err());
    }

    #[test]
    fn provisioned_sandboxes_fit_in_the_memory_budget() {
        let c = PutCheck {
            requested: 3,
            memory_mb: 1024,
            memory_others_mb: 1024,
            ..check()
        };
        assert_eq!(check_put(&c), Ok(()));
        assert_eq!(
            check_put(&PutCheck {
                memory_others_mb: 1025,
                ..c
            }),
            Err(PutRefusal::OverMemoryBudget {
                needed_mb: 4097,
                budget_mb: 4096
            })
        );
    }

    #[test]
    fn starts_what_is_missing_one_at_a_time_while_failing() {
        assert_eq!(to_start(2, 0, false), 2);
        assert_eq!(to_start(2, 1, false), 1);
        assert_eq!(to_start(2, 3, false), 0);
        assert_eq!(to_start(3, 0, true), 1);
        assert_eq!(to_start(3, 3, true), 0);
    }

    #[test]
    fn sheds_idle_surplus_only() {
        assert_eq!(surplus(2, 3, 0), 1);
        assert_eq!(surplus(0, 2, 2), 2, "busy ones go when they finish");
        assert_eq!(surplus(1, 0, 3), 0);
        assert_eq!(surplus(4, 2, 1), 0);
    }

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(7), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn status_follows_readiness_and_failures() {
        use ProvisionedStatus::*;
        assert_eq!(status(2, 0, None, None), (InProgress, None));
        assert_eq!(status(2, 1, None, None), (InProgress, None));
        assert_eq!(status(2, 2, None, None), (Ready, None));
        assert_eq!(status(2, 3, None, None), (Ready, None));
        assert_eq!(
            status(2, 1, None, Some("init failed")),
            (Failed, Some("init failed".into()))
        );
        assert_eq!(
            status(2, 2, None, Some("init failed")),
            (Ready, None),
            "complete again: the failure is history"
        );
        assert_eq!(
            status(2, 2, Some("weighted alias"), None),
            (Failed, Some("weighted alias".into()))
        );
    }
}
