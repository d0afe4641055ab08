//! Prices with effective dates (`service_prices`, `item_prices`): a service's monthly price and a
//! recurring item's monthly amount as histories. A row is in force from its `effective_from`
//! (NULL: since the beginning) until the next one; `services.monthly_price_micros` and
//! `items.amount_micros` keep the newest price, the catalogue's current entry.

use crate::store::BeginWrite;
use std::collections::BTreeMap;

use chrono::{NaiveDate, Utc};
use serde::Serialize;

use super::audit::{snapshot, write_audit};
use super::{Actor, Store, StoreError, micros, money, on_db};
use crate::domain::owed::{PriceChange, PriceHistory};
use crate::domain::{ItemId, ItemKind, Money, ServiceId};

#[derive(sqlx::FromRow)]
struct PriceRow {
    owner: i64,
    effective_from: Option<NaiveDate>,
    micros: i64,
}

/// What a price change did: the history before and after, for the audit and the user.
#[derive(Debug, Clone, Serialize)]
pub struct PriceSet {
    pub from: NaiveDate,
    pub amount: Money,
    /// The price that was in force on `from` before the change.
    pub was: Money,
    pub history: PriceHistory,
    /// Whether the change reaches into a period that may already be billed (audited as such).
    pub retroactive: bool,
}

fn histories<K: Ord>(
    rows: Vec<PriceRow>,
    key: impl Fn(i64) -> Result<K, StoreError>,
) -> Result<BTreeMap<K, PriceHistory>, StoreError> {
    let mut changes: BTreeMap<K, Vec<PriceChange>> = BTreeMap::new();
    for r in rows {
        changes.entry(key(r.owner)?).or_default().push(PriceChange {
            from: r.effective_from,
            amount: money(r.micros),
        });
    }
    Ok(changes
        .into_iter()
        .map(|(k, v)| (k, PriceHistory::new(v)))
        .collect())
}

impl Store {
    /// Every service's price history.
    pub async fn service_prices(&self) -> Result<BTreeMap<ServiceId, PriceHistory>, StoreError> {
        let rows: Vec<PriceRow> = on_db!(self, p => sqlx::query_as(
            "SELECT service_id AS owner, effective_from, monthly_price_micros AS micros \
             FROM service_prices ORDER BY service_id, id")
            .fetch_all(p)
            .await?);
        histories(rows, |id| Ok(ServiceId::new(id)?))
    }

    /// Every recurring item's price history.
    pub async fn item_prices(&self) -> Result<BTreeMap<ItemId, PriceHistory>, StoreError> {
        let rows: Vec<PriceRow> = on_db!(self, p => sqlx::query_as(
            "SELECT item_id AS owner, effective_from, amount_micros AS micros \
             FROM item_prices ORDER BY item_id, id")
            .fetch_all(p)
            .await?);
        histories(rows, |id| Ok(ItemId::new(id)?))
    }

    pub async fn service_price_history(&self, id: ServiceId) -> Result<PriceHistory, StoreError> {
        Ok(self.service_prices().await?.remove(&id).unwrap_or_default())
    }

    pub async fn item_price_history(&self, id: ItemId) -> Result<PriceHistory, StoreError> {
        Ok(self.item_prices().await?.remove(&id).unwrap_or_default())
    }

    /// A service's monthly price is `amount` from `from` on (until a later change). A change on a
    /// day that already has one replaces it. `retroactive` (the change reaches into a period that
    /// may already be billed) is recorded in the audit: the documents of such periods change only
    /// when they are resynced.
    pub async fn set_service_price(
        &self,
        actor: &Actor,
        id: ServiceId,
        amount: Money,
        from: NaiveDate,
        retroactive: bool,
    ) -> Result<PriceSet, StoreError> {
        let service = self.service(id).await?;
        let stored = self.service_price_history(id).await?;
        let Change {
            beginning,
            before,
            after,
            value,
            action,
        } = Change::of(service.monthly_price, stored, amount, from, retroactive)?;
        let now = Utc::now();
        on_db!(self, p => {
            let mut tx = p.begin_write().await?;
            if let Some(m) = beginning {
                sqlx::query(
                    "INSERT INTO service_prices (service_id, effective_from, monthly_price_micros, created_at) \
                     VALUES ($1, NULL, $2, $3)",
                )
                .bind(id.get())
                .bind(m)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query("DELETE FROM service_prices WHERE service_id = $1 AND effective_from = $2")
                .bind(id.get())
                .bind(from)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO service_prices (service_id, effective_from, monthly_price_micros, created_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(id.get())
            .bind(from)
            .bind(value)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE services SET monthly_price_micros = $2, updated_at = $3 WHERE id = $1")
                .bind(id.get())
                .bind(micros(after.newest())?)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            write_audit!(&mut *tx, actor, "service", id, action, snapshot(&before), snapshot(&after))?;
            tx.commit().await?;
        });
        Ok(PriceSet {
            from,
            amount,
            was: before.on(from),
            history: after,
            retroactive,
        })
    }

    /// A recurring item's monthly amount is `amount` from `from` on (see `set_service_price`).
    /// Refused for a once-off item: it is owed once, at its amount (`item edit`).
    pub async fn set_item_price(
        &self,
        actor: &Actor,
        id: ItemId,
        amount: Money,
        from: NaiveDate,
        retroactive: bool,
    ) -> Result<PriceSet, StoreError> {
        let item = self.item(id).await?;
        if item.kind != ItemKind::Recurring {
            return Err(StoreError::Refused(format!(
                "item {id} is a once-off item: it has one amount, changed with `item edit --amount` until it is invoiced"
            )));
        }
        let stored = self.item_price_history(id).await?;
        let Change {
            beginning,
            before,
            after,
            value,
            action,
        } = Change::of(item.amount, stored, amount, from, retroactive)?;
        let now = Utc::now();
        on_db!(self, p => {
            let mut tx = p.begin_write().await?;
            if let Some(m) = beginning {
                sqlx::query(
                    "INSERT INTO item_prices (item_id, effective_from, amount_micros, created_at) \
                     VALUES ($1, NULL, $2, $3)",
                )
                .bind(id.get())
                .bind(m)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query("DELETE FROM item_prices WHERE item_id = $1 AND effective_from = $2")
                .bind(id.get())
                .bind(from)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO item_prices (item_id, effective_from, amount_micros, created_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(id.get())
            .bind(from)
            .bind(value)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE items SET amount_micros = $2, updated_at = $3 WHERE id = $1")
                .bind(id.get())
                .bind(micros(after.newest())?)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            write_audit!(&mut *tx, actor, "item", id, action, snapshot(&before), snapshot(&after))?;
            tx.commit().await?;
        });
        Ok(PriceSet {
            from,
            amount,
            was: before.on(from),
            history: after,
            retroactive,
        })
    }
}

/// One price change worked out before it is written: the history before and after, and (for a
/// price that had no history yet) the row that makes it begin at the beginning.
struct Change {
    /// The current price in micro-units, to be written as in force from the beginning first.
    beginning: Option<i64>,
    before: PriceHistory,
    after: PriceHistory,
    /// The new price in micro-units.
    value: i64,
    /// The audit action.
    action: &'static str,
}

impl Change {
    fn of(
        current: Money,
        stored: PriceHistory,
        amount: Money,
        from: NaiveDate,
        retroactive: bool,
    ) -> Result<Change, StoreError> {
        // A history always begins at the beginning.
        let beginning = stored
            .changes()
            .is_empty()
            .then(|| micros(current))
            .transpose()?;
        let before = match beginning {
            Some(_) => PriceHistory::constant(current),
            None => stored,
        };
        let after = PriceHistory::new(before.changes().iter().copied().chain([PriceChange {
            from: Some(from),
            amount,
        }]));
        Ok(Change {
            beginning,
            before,
            after,
            value: micros(amount)?,
            action: if retroactive {
                "price-retroactive"
            } else {
                "price"
            },
        })
    }
}
