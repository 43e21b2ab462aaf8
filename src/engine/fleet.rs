//! Batch legs and chunks through the fleet's shared cache (`fleet::shared`): read from Redis,
//! or computed by the one replica that wins the leg's lease and written for the others, who
//! wait for it. Without Redis (or with `[cache] shared = false`) a replica computes alone.

use std::collections::HashMap;
use std::future::Future;

use super::Engine;
use crate::error::Result;
use crate::fleet::shared::{identity, Lease, SharedLegs};
use crate::model::column::{Param, SessionParams};
use crate::model::value::Value;
use crate::plan::split::Layer;

/// Rows of a leg, and whether they came from the fleet (not computed here).
pub(super) type Fetched = (Vec<Vec<Value>>, bool);

/// What the fleet holds or computes of a set of chunks this replica lacks.
#[derive(Default)]
pub(super) struct FleetPlan {
    /// Chunks another replica computed (by index).
    pub found: HashMap<usize, Vec<Vec<Value>>>,
    /// Chunks whose lease this replica holds: it computes them (in one statement).
    pub won: Vec<usize>,
    /// Chunks another replica is computing: wait for them.
    pub held: Vec<usize>,
}

impl Engine {
    /// The shared cache, when a leg of `layer` may use it (batch legs with caches on and not
    /// bypassed).
    pub(super) fn shared_for(&self, layer: Layer, bypass: bool) -> Option<&SharedLegs> {
        self.shared.as_deref().filter(|_| layer == Layer::Batch && !bypass && self.legs.enabled())
    }

    /// A leg's identity in the shared cache: its SQL (with W), parameters and settings.
    pub(super) fn leg_identity(sql: &str, params: &[Param], wp: &SessionParams) -> String {
        identity(sql, params, wp)
    }

    /// One leg through the fleet: from Redis, else computed here (when this replica wins its
    /// lease, or the replica that holds it does not deliver in time) and shared.
    pub(super) async fn fleet_leg<F, Fut>(
        &self,
        shared: &SharedLegs,
        id: &str,
        compute: F,
    ) -> Result<Fetched>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<Vec<Value>>>>,
    {
        if let Some(rows) = shared.get(id).await {
            return Ok((rows, true));
        }
        match shared.lease(id).await {
            Lease::Won => {
                // the previous holder may have written it and let go just now
                if let Some(rows) = shared.get(id).await {
                    shared.release(id).await;
                    return Ok((rows, true));
                }
                let rows = compute().await;
                if let Ok(r) = &rows {
                    shared.put(id, r).await;
                }
                shared.release(id).await;
                rows.map(|r| (r, false))
            }
            Lease::Held => match shared.wait_for(id).await {
                Some(rows) => Ok((rows, true)),
                None => {
                    let rows = compute().await?;
                    shared.put(id, &rows).await;
                    Ok((rows, false))
                }
            },
            Lease::Alone => compute().await.map(|r| (r, false)),
        }
    }

    /// Which of the chunks `ids` (by index) the fleet has, which this replica computes and
    /// which another replica is computing.
    pub(super) async fn fleet_plan(
        &self,
        shared: &SharedLegs,
        ids: &[(usize, String)],
    ) -> FleetPlan {
        let got = futures::future::join_all(ids.iter().map(|(_, id)| shared.get(id))).await;
        let mut plan = FleetPlan::default();
        let mut absent = Vec::new();
        for ((i, id), rows) in ids.iter().zip(got) {
            match rows {
                Some(r) => {
                    plan.found.insert(*i, r);
                }
                None => absent.push((*i, id)),
            }
        }
        let leases = futures::future::join_all(absent.iter().map(|(_, id)| shared.lease(id))).await;
        for ((i, id), lease) in absent.into_iter().zip(leases) {
            match lease {
                Lease::Won => match shared.get(id).await {
                    Some(rows) => {
                        shared.release(id).await;
                        plan.found.insert(i, rows);
                    }
                    None => plan.won.push(i),
                },
                Lease::Held => plan.held.push(i),
                Lease::Alone => plan.won.push(i),
            }
        }
        plan
    }
}
