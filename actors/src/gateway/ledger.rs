//! Spend and budgets, global and per network, in exact pico-dollars.
//!
//! Before a call the gateway reserves its worst-case cost (an upper bound of its prompt's
//! tokens plus `max_tokens`, at the model's prices); after it, the reservation is replaced by
//! the real cost. A reservation that would take spent + reserved past a budget is refused, so
//! however many calls run at once, a budget is never overshot. Only the gateway actor writes;
//! anyone may read.

use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use serde::Serialize;

use super::ModelError;
use crate::ids::NetworkId;
use crate::types::Usd;

const UNLIMITED: u64 = u64::MAX;

#[derive(Debug)]
struct Account {
    limit: AtomicU64,
    spent: AtomicU64,
    reserved: AtomicU64,
}

impl Account {
    fn new(limit: Option<Usd>) -> Self {
        Self {
            limit: AtomicU64::new(limit.map_or(UNLIMITED, |l| l.0)),
            spent: AtomicU64::new(0),
            reserved: AtomicU64::new(0),
        }
    }

    fn view(&self) -> Spend {
        let limit = self.limit.load(Ordering::Acquire);
        Spend {
            limit: (limit != UNLIMITED).then_some(Usd(limit)),
            spent: Usd(self.spent.load(Ordering::Acquire)),
            reserved: Usd(self.reserved.load(Ordering::Acquire)),
        }
    }

    fn remaining(&self) -> Option<Usd> {
        let v = self.view();
        v.limit
            .map(|l| l.saturating_sub(v.spent).saturating_sub(v.reserved))
    }
}

/// What an account has spent and holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Spend {
    /// The budget, if any.
    #[serde(rename = "budget_usd")]
    pub limit: Option<Usd>,
    /// Settled cost of finished calls.
    #[serde(rename = "spent_usd")]
    pub spent: Usd,
    /// Worst-case cost of calls in flight.
    #[serde(rename = "reserved_usd")]
    pub reserved: Usd,
}

/// A held amount, to settle or release.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a reservation must be settled or released"]
pub struct Reservation {
    network: Option<NetworkId>,
    amount: Usd,
}

impl Reservation {
    /// The amount held.
    pub fn amount(&self) -> Usd {
        self.amount
    }
}

/// Every account of a node.
#[derive(Debug)]
pub struct Ledger {
    global: Account,
    networks: DashMap<NetworkId, Account>,
    network_default: Option<Usd>,
}

impl Ledger {
    /// A ledger with a global budget and a default budget for networks that set none.
    pub fn new(global: Option<Usd>, network_default: Option<Usd>) -> Self {
        if let Some(limit) = global {
            metrics::gauge!(crate::metrics_names::GATEWAY_BUDGET_USD)
                .set(limit.0 as f64 / Usd::SCALE);
        }
        Self {
            global: Account::new(global),
            networks: DashMap::new(),
            network_default,
        }
    }

    /// Sets a network's budget (`None`: the default).
    pub fn set_network_budget(&self, network: NetworkId, budget: Option<Usd>) {
        let limit = budget.or(self.network_default).map_or(UNLIMITED, |l| l.0);
        self.networks
            .entry(network)
            .or_insert_with(|| Account::new(None))
            .limit
            .store(limit, Ordering::Release);
    }

    /// Raises a network's settled spend to `spent` (what its journaled tasks cost, when the
    /// network starts on this node after a restart or a takeover). Never lowers it.
    pub fn restore_network_spend(&self, network: NetworkId, spent: Usd) {
        self.networks
            .entry(network)
            .or_insert_with(|| Account::new(None))
            .spent
            .fetch_max(spent.0, Ordering::AcqRel);
    }

    /// Forgets a deleted network.
    pub fn forget(&self, network: NetworkId) {
        self.networks.remove(&network);
    }

    /// Holds `amount` against the global budget and `network`'s, or refuses if either would be
    /// overshot.
    pub fn reserve(
        &self,
        network: Option<NetworkId>,
        amount: Usd,
    ) -> Result<Reservation, ModelError> {
        let refuse = |scope: String, account: &Account| {
            let v = account.view();
            ModelError::BudgetExceeded {
                scope,
                limit: v.limit.unwrap_or_default(),
                remaining: account.remaining().unwrap_or_default(),
                needed: amount,
            }
        };
        if self.global.remaining().is_some_and(|r| r < amount) {
            return Err(refuse("global".into(), &self.global));
        }
        if let Some(net) = network {
            let account = self
                .networks
                .entry(net)
                .or_insert_with(|| Account::new(self.network_default));
            if account.remaining().is_some_and(|r| r < amount) {
                return Err(refuse(format!("network {net}"), &account));
            }
            account.reserved.fetch_add(amount.0, Ordering::AcqRel);
        }
        self.global.reserved.fetch_add(amount.0, Ordering::AcqRel);
        Ok(Reservation { network, amount })
    }

    fn unhold(&self, r: &Reservation) {
        let take = |a: &AtomicU64| {
            let _ = a.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                Some(v.saturating_sub(r.amount.0))
            });
        };
        take(&self.global.reserved);
        if let Some(net) = r.network
            && let Some(a) = self.networks.get(&net)
        {
            take(&a.reserved);
        }
    }

    /// Replaces a reservation by the real cost of the call.
    pub fn settle(&self, r: Reservation, cost: Usd) {
        self.unhold(&r);
        let spent = self.global.spent.fetch_add(cost.0, Ordering::AcqRel) + cost.0;
        metrics::gauge!(crate::metrics_names::GATEWAY_SPENT_USD).set(spent as f64 / Usd::SCALE);
        if let Some(net) = r.network
            && let Some(a) = self.networks.get(&net)
        {
            a.spent.fetch_add(cost.0, Ordering::AcqRel);
        }
    }

    /// Drops a reservation: the call cost nothing.
    pub fn release(&self, r: Reservation) {
        self.unhold(&r);
    }

    /// The global account.
    pub fn global(&self) -> Spend {
        self.global.view()
    }

    /// A network's account.
    pub fn network(&self, network: NetworkId) -> Spend {
        self.networks
            .get(&network)
            .map(|a| a.view())
            .unwrap_or(Spend {
                limit: self.network_default,
                spent: Usd(0),
                reserved: Usd(0),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_never_let_spent_plus_held_pass_a_budget() {
        let ledger = Ledger::new(Some(Usd(100)), None);
        let net = NetworkId::new();
        ledger.set_network_budget(net, Some(Usd(60)));
        let a = ledger.reserve(Some(net), Usd(40)).unwrap();
        // The network has 20 left: 30 is refused even though the global budget has room.
        let err = ledger.reserve(Some(net), Usd(30)).unwrap_err();
        assert_eq!(err.code(), "budget_exceeded");
        assert!(err.to_string().contains("network"), "{err}");
        ledger.settle(a, Usd(25));
        assert_eq!(ledger.network(net).spent, Usd(25));
        assert_eq!(ledger.network(net).reserved, Usd(0));
        let b = ledger.reserve(Some(net), Usd(35)).unwrap();
        // Global: 25 spent + 35 held = 60; 41 more would pass 100.
        let err = ledger.reserve(None, Usd(41)).unwrap_err();
        assert!(err.to_string().contains("global"), "{err}");
        ledger.release(b);
        assert_eq!(ledger.global().reserved, Usd(0));
        assert_eq!(ledger.global().spent, Usd(25));
    }

    #[test]
    fn networks_without_a_budget_get_the_default_or_none() {
        let ledger = Ledger::new(None, Some(Usd(10)));
        let net = NetworkId::new();
        assert!(ledger.reserve(Some(net), Usd(11)).is_err());
        let unlimited = Ledger::new(None, None);
        assert!(unlimited.reserve(Some(net), Usd(u64::MAX / 2)).is_ok());
    }
}
