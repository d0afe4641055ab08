//! Bulk reads of contract charges: the charges of many contracts whose marker begins with one
//! prefix (a period's, `rb 2026-11 `), in one query per [`CONTRACTS_PER_QUERY`] contracts, paged
//! as every query is. Reconcile and a resync's plan read a period's charges this way instead of
//! one query per line or per contract.

use super::query::Filter;
use super::wire::ContractCharge;
use super::{AutotaskClient, AutotaskError, RemoteCharge};
use crate::domain::{ContractId, Money};

/// Contracts per `in` filter. Autotask documents no limit on an `in` list; 200 keeps each query's
/// body small (a few kilobytes) and a tenant's contracts to a handful of queries.
pub const CONTRACTS_PER_QUERY: usize = 200;

impl From<ContractCharge> for RemoteCharge {
    fn from(c: ContractCharge) -> Self {
        RemoteCharge {
            id: c.id,
            contract_id: c.contract_id.unwrap_or_default(),
            marker: c.purchase_order_number,
            unit_quantity: c.unit_quantity.unwrap_or_default(),
            unit_price: Money::new(c.unit_price.unwrap_or_default()),
            unit_cost: Money::new(c.unit_cost.unwrap_or_default()),
            is_billed: c.is_billed.unwrap_or(false),
        }
    }
}

impl AutotaskClient {
    /// Every charge of `contracts` whose marker (`purchaseOrderNumber`) begins with `prefix`, in
    /// the order Autotask lists them.
    pub async fn charges_with_marker_prefix(
        &self,
        contracts: &[ContractId],
        prefix: &str,
    ) -> Result<Vec<RemoteCharge>, AutotaskError> {
        let mut out = Vec::new();
        for chunk in contracts.chunks(CONTRACTS_PER_QUERY) {
            let f = Filter::is_in("contractID", chunk.iter().map(|c| c.get()))
                .and(Filter::begins_with("purchaseOrderNumber", prefix));
            let found: Vec<ContractCharge> = self.query("ContractCharges", &f).await?;
            out.extend(found.into_iter().map(RemoteCharge::from));
        }
        Ok(out)
    }
}
