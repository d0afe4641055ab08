//! Once-off and recurring items.

use crate::store::BeginWrite;
use chrono::{NaiveDate, Utc};

use super::audit::{snapshot, write_audit};
use super::{Actor, Store, StoreError, micros, money, on_db};
use crate::domain::item::{check_editable, check_removable, check_restorable};
use crate::domain::{
    AutotaskCoding, ContractId, CustomerId, Item, ItemId, ItemKind, ItemStatus, MaterialCodeId,
    Money, NonEmpty, Period, ProductId,
};

/// A new item, as entered.
#[derive(Debug, Clone)]
pub struct NewItem {
    pub customer_id: CustomerId,
    pub kind: ItemKind,
    pub description: NonEmpty,
    pub amount: Money,
    pub starts_on: Option<NaiveDate>,
    pub autotask: Option<AutotaskCoding>,
}

#[derive(sqlx::FromRow)]
struct ItemRow {
    id: i64,
    customer_id: i64,
    kind: String,
    description: String,
    amount_micros: i64,
    starts_on: Option<NaiveDate>,
    autotask_contract_id: Option<i64>,
    autotask_product_id: Option<i64>,
    autotask_material_code_id: Option<i64>,
    status: String,
    invoiced_period: Option<String>,
}

macro_rules! select_items {
    ($tail:literal) => {
        concat!(
            "SELECT id, customer_id, kind, description, amount_micros, starts_on, autotask_contract_id, \
             autotask_product_id, autotask_material_code_id, status, invoiced_period FROM items ",
            $tail
        )
    };
}

impl TryFrom<ItemRow> for Item {
    type Error = StoreError;
    fn try_from(r: ItemRow) -> Result<Item, StoreError> {
        let autotask = match (
            r.autotask_contract_id,
            r.autotask_product_id,
            r.autotask_material_code_id,
        ) {
            (Some(c), Some(p), Some(m)) => Some(AutotaskCoding {
                contract_id: ContractId::new(c)?,
                product_id: ProductId::new(p)?,
                material_code_id: MaterialCodeId::new(m)?,
            }),
            _ => None,
        };
        Ok(Item {
            id: ItemId::new(r.id)?,
            customer_id: CustomerId::new(r.customer_id)?,
            kind: ItemKind::parse(&r.kind)
                .ok_or_else(|| StoreError::Corrupt(format!("item kind {:?}", r.kind)))?,
            description: NonEmpty::parse("item description", &r.description)?,
            amount: money(r.amount_micros),
            starts_on: r.starts_on,
            autotask,
            status: ItemStatus::parse(&r.status)
                .ok_or_else(|| StoreError::Corrupt(format!("item status {:?}", r.status)))?,
            invoiced_period: r
                .invoiced_period
                .as_deref()
                .map(Period::parse)
                .transpose()?,
        })
    }
}

impl Store {
    /// Adds an item. Autotask customers' items must carry contract, product and material code.
    pub async fn add_item(&self, actor: &Actor, new: &NewItem) -> Result<Item, StoreError> {
        let customer = self.customer(new.customer_id).await?;
        match (customer.target.is_autotask(), new.autotask.is_some()) {
            (true, false) => {
                return Err(StoreError::Refused(format!(
                    "customer {} ({}) is an Autotask account: the item needs --contract, --product and --material-code",
                    customer.id, customer.name
                )));
            }
            (false, true) => {
                return Err(StoreError::Refused(format!(
                    "customer {} ({}) is billed through Xero: contract, product and material code apply to Autotask accounts only",
                    customer.id, customer.name
                )));
            }
            _ => {}
        }
        let status = match new.kind {
            ItemKind::Once => ItemStatus::Pending,
            ItemKind::Recurring => ItemStatus::Active,
        };
        let amount = micros(new.amount)?;
        let now = Utc::now();
        let c = new.autotask;
        let id: i64 = on_db!(self, p => {
            let mut tx = p.begin_write().await?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO items (customer_id, kind, description, amount_micros, starts_on, autotask_contract_id, \
                 autotask_product_id, autotask_material_code_id, status, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING id",
            )
            .bind(new.customer_id.get())
            .bind(new.kind.as_str())
            .bind(new.description.as_str())
            .bind(amount)
            .bind(new.starts_on)
            .bind(c.map(|c| c.contract_id.get()))
            .bind(c.map(|c| c.product_id.get()))
            .bind(c.map(|c| c.material_code_id.get()))
            .bind(status.as_str())
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            if new.kind == ItemKind::Recurring {
                // Its price history begins at the beginning.
                sqlx::query(
                    "INSERT INTO item_prices (item_id, effective_from, amount_micros, created_at) VALUES ($1, NULL, $2, $3)",
                )
                .bind(id)
                .bind(amount)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            let row: ItemRow = sqlx::query_as(select_items!("WHERE id = $1")).bind(id).fetch_one(&mut *tx).await?;
            let item = Item::try_from(row)?;
            write_audit!(&mut *tx, actor, "item", id, "add", None, snapshot(&item))?;
            tx.commit().await?;
            id
        });
        self.item(ItemId::new(id)?).await
    }

    pub async fn item(&self, id: ItemId) -> Result<Item, StoreError> {
        let row: Option<ItemRow> = on_db!(self, p => sqlx::query_as(select_items!("WHERE id = $1"))
            .bind(id.get())
            .fetch_optional(p)
            .await?);
        row.ok_or_else(|| StoreError::NotFound(format!("item {id}")))?
            .try_into()
    }

    /// Items of one customer (or all), in the order they were added.
    pub async fn items(&self, customer: Option<CustomerId>) -> Result<Vec<Item>, StoreError> {
        let rows: Vec<ItemRow> = on_db!(self, p => sqlx::query_as(select_items!(
            "WHERE CAST($1 AS BIGINT) IS NULL OR customer_id = $1 ORDER BY customer_id, id"))
            .bind(customer.map(|c| c.get()))
            .fetch_all(p)
            .await?);
        rows.into_iter().map(Item::try_from).collect()
    }

    /// Changes an item's description or amount; refused once a once-off item was invoiced. A
    /// recurring item's amount is corrected: its newest price, for every day that price applies
    /// (a price change from a date is `set_item_price`).
    pub async fn edit_item(
        &self,
        actor: &Actor,
        id: ItemId,
        description: Option<NonEmpty>,
        amount: Option<Money>,
    ) -> Result<Item, StoreError> {
        let before = self.item(id).await?;
        check_editable(&before).map_err(StoreError::Refused)?;
        let mut after = before.clone();
        if let Some(d) = description {
            after.description = d;
        }
        if let Some(a) = amount {
            after.amount = a;
        }
        self.write_item(actor, &before, &after, "edit").await
    }

    /// Removes an item: a recurring item stops being billed (and can be re-enabled); a once-off item
    /// that was not invoiced yet is withdrawn. Refused for an invoiced once-off item.
    pub async fn remove_item(&self, actor: &Actor, id: ItemId) -> Result<Item, StoreError> {
        let before = self.item(id).await?;
        check_removable(&before).map_err(StoreError::Refused)?;
        let mut after = before.clone();
        after.status = ItemStatus::Removed;
        self.write_item(actor, &before, &after, "remove").await
    }

    /// Re-enables a removed recurring item.
    pub async fn restore_item(&self, actor: &Actor, id: ItemId) -> Result<Item, StoreError> {
        let before = self.item(id).await?;
        check_restorable(&before).map_err(StoreError::Refused)?;
        let mut after = before.clone();
        after.status = ItemStatus::Active;
        self.write_item(actor, &before, &after, "restore").await
    }

    async fn write_item(
        &self,
        actor: &Actor,
        before: &Item,
        after: &Item,
        action: &str,
    ) -> Result<Item, StoreError> {
        let amount = micros(after.amount)?;
        on_db!(self, p => {
            let mut tx = p.begin_write().await?;
            // Guarded by the old status so that a run billing the item meanwhile wins cleanly.
            let n = sqlx::query(
                "UPDATE items SET description = $2, amount_micros = $3, status = $4, updated_at = $5 \
                 WHERE id = $1 AND status = $6",
            )
            .bind(before.id.get())
            .bind(after.description.as_str())
            .bind(amount)
            .bind(after.status.as_str())
            .bind(Utc::now())
            .bind(before.status.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n != 1 {
                return Err(StoreError::Refused(format!("item {} changed meanwhile (it may have been invoiced); nothing was changed", before.id)));
            }
            if before.kind == ItemKind::Recurring && before.amount != after.amount {
                let n = sqlx::query(
                    "UPDATE item_prices SET amount_micros = $2 WHERE id = (SELECT id FROM item_prices WHERE item_id = $1 \
                     ORDER BY CASE WHEN effective_from IS NULL THEN 0 ELSE 1 END DESC, effective_from DESC LIMIT 1)",
                )
                .bind(before.id.get())
                .bind(amount)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n == 0 {
                    sqlx::query(
                        "INSERT INTO item_prices (item_id, effective_from, amount_micros, created_at) VALUES ($1, NULL, $2, $3)",
                    )
                    .bind(before.id.get())
                    .bind(amount)
                    .bind(Utc::now())
                    .execute(&mut *tx)
                    .await?;
                }
            }
            write_audit!(&mut *tx, actor, "item", before.id, action, snapshot(before), snapshot(after))?;
            tx.commit().await?;
        });
        self.item(before.id).await
    }
}
