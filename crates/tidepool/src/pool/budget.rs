//! The pool's hook for a connection budget shared with other processes ([`Budget`]): the pool
//! asks it before *opening* an upstream connection and keeps the [`BudgetTicket`] it gets next to
//! the connection, so the budget is returned exactly when the connection is closed (dropping the
//! ticket), wherever that happens. Checkout and checkin of an open connection never call the
//! budget except [`Budget::shed`], which must be a cheap local check (no I/O).

use std::future::Future;
use std::pin::Pin;

use tokio::time::Instant;

/// A unit of budget held for one open connection; dropping it gives the unit back.
pub struct BudgetTicket(#[allow(dead_code)] Box<dyn Send + Sync>);

impl BudgetTicket {
    /// A ticket whose drop runs `held`'s `Drop`.
    pub fn new(held: impl Send + Sync + 'static) -> Self {
        BudgetTicket(Box::new(held))
    }
}

pub type Acquire<'a> = Pin<Box<dyn Future<Output = Option<BudgetTicket>> + Send + 'a>>;

/// A connection budget beyond the pool's own `size` (e.g. one limit over several nodes).
pub trait Budget: Send + Sync + 'static {
    /// One unit for a connection about to be opened; waits at most until `deadline` (a deadline
    /// in the past: try once). `None`: no budget in time.
    fn acquire(&self, deadline: Instant) -> Acquire<'_>;
    /// At checkin: whether to close this connection instead of keeping it idle (the budget wants
    /// units back). Cheap and local; each `true` counts as one unit being returned.
    fn shed(&self) -> bool;
    /// In upkeep: whether to close one idle connection now (another holder asked for budget).
    fn shed_idle(&self) -> bool {
        self.shed()
    }
    /// The pool's size changed (configuration reload): the new limit. Units held beyond it are
    /// given back as their connections close.
    fn resize(&self, _limit: usize) {}
}
