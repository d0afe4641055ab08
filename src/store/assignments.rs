//! Assignments: the life-cycle ASSIGNED → EXCLUDED → free, applied inside transactions. The
//! partial unique index `assignments_one_live_per_service` makes "one live assignment per service"
//! hold even when two connections assign the same service at once.

use crate::store::BeginWrite;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use super::audit::write_audit;
use super::{Actor, Store, StoreError, is_unique_violation, on_db};
use crate::domain::assignment::next_state;
use crate::domain::service::NotAssignable;
use crate::domain::{
    AssignmentId, AssignmentState, AutotaskCoding, ContractId, CustomerId, MaterialCodeId,
    ProductId, ServiceId, Transition,
};

/// An assignment with the names a person needs to read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct AssignmentView {
    #[sqlx(try_from = "i64")]
    pub id: AssignmentId,
    #[sqlx(try_from = "i64")]
    pub service_id: ServiceId,
    pub service_name: String,
    #[sqlx(try_from = "i64")]
    pub customer_id: CustomerId,
    pub customer_name: String,
    #[sqlx(try_from = "String")]
    pub state: StateColumn,
    pub starts_on: NaiveDate,
    /// The first day no longer held (set by unassign).
    pub ends_on: Option<NaiveDate>,
    /// The day it last came back from the trash can (set by restore).
    pub restored_on: Option<NaiveDate>,
    pub autotask_contract_id: Option<i64>,
    pub autotask_product_id: Option<i64>,
    pub autotask_material_code_id: Option<i64>,
    pub changed_at: DateTime<Utc>,
    pub changed_by: String,
}

/// The `state` column, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct StateColumn(pub AssignmentState);

impl TryFrom<String> for StateColumn {
    type Error = StoreError;
    fn try_from(s: String) -> Result<Self, StoreError> {
        AssignmentState::parse(&s)
            .map(StateColumn)
            .ok_or_else(|| StoreError::Corrupt(format!("assignment state {s:?}")))
    }
}

impl AssignmentView {
    pub fn state(&self) -> AssignmentState {
        self.state.0
    }

    pub fn autotask(&self) -> Result<Option<AutotaskCoding>, StoreError> {
        match (
            self.autotask_contract_id,
            self.autotask_product_id,
            self.autotask_material_code_id,
        ) {
            (Some(c), Some(p), Some(m)) => Ok(Some(AutotaskCoding {
                contract_id: ContractId::new(c)?,
                product_id: ProductId::new(p)?,
                material_code_id: MaterialCodeId::new(m)?,
            })),
            _ => Ok(None),
        }
    }
}

/// One assignment to make: `assign`'s arguments, for `assign_all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewAssignment {
    pub service_id: ServiceId,
    pub customer_id: CustomerId,
    pub starts_on: NaiveDate,
    pub coding: Option<AutotaskCoding>,
}

macro_rules! select_assignments {
    ($tail:literal) => {
        concat!(
            "SELECT a.id, a.service_id, s.name AS service_name, a.customer_id, c.name AS customer_name, a.state, \
             a.starts_on, a.ends_on, a.restored_on, a.autotask_contract_id, a.autotask_product_id, a.autotask_material_code_id, \
             a.changed_at, a.changed_by FROM assignments a JOIN services s ON s.id = a.service_id \
             JOIN customers c ON c.id = a.customer_id ",
            $tail
        )
    };
}

impl Store {
    /// Assigns a free, assignable service to an enabled customer. Autotask customers must name the
    /// contract, product and material code (validated against Autotask by the caller first); Xero
    /// customers must not.
    pub async fn assign(
        &self,
        actor: &Actor,
        service_id: ServiceId,
        customer_id: CustomerId,
        starts_on: NaiveDate,
        coding: Option<AutotaskCoding>,
    ) -> Result<AssignmentView, StoreError> {
        let a = NewAssignment {
            service_id,
            customer_id,
            starts_on,
            coding,
        };
        let mut ids = self.assign_all(actor, std::slice::from_ref(&a)).await?;
        let id = ids.pop().ok_or_else(|| {
            StoreError::Corrupt(format!("service {service_id} was assigned without an id"))
        })?;
        self.assignment(id).await
    }

    /// Whether `a` may be made now, by every rule `assign` applies (nothing is written): the
    /// service is assignable and free, the customer enabled, the Autotask choices given exactly
    /// for Autotask accounts, and the history stays true. A bulk import checks every row with it
    /// before it writes any.
    pub async fn check_assignment(&self, a: &NewAssignment) -> Result<(), StoreError> {
        self.assignment_refusal(a).await.map(|_| ())
    }

    /// The refusal of `a`, if any; else the words that name it (service and customer).
    async fn assignment_refusal(&self, a: &NewAssignment) -> Result<String, StoreError> {
        let NewAssignment {
            service_id,
            customer_id,
            starts_on,
            coding,
        } = *a;
        let service = self.service(service_id).await?;
        let customer = self.customer(customer_id).await?;
        let who = format!(
            "service {} ({}) to customer {} ({})",
            service.id, service.name, customer.id, customer.name
        );
        match service.assignability() {
            Err(NotAssignable::IsParent) => {
                return Err(StoreError::Refused(format!(
                    "cannot assign {who}: the service is a parent of other services; assign one of its children \
                     (see `rebilld service list --assignable`)"
                )));
            }
            Err(NotAssignable::NotEnabledForRebilling) => {
                return Err(StoreError::Refused(format!(
                    "cannot assign {who}: the service is not enabled for rebilling"
                )));
            }
            Ok(()) => {}
        }
        if !customer.enabled {
            return Err(StoreError::Refused(format!(
                "cannot assign {who}: the customer is disabled (only enabled customers can be given new services)"
            )));
        }
        match (customer.target.is_autotask(), &coding) {
            (true, None) => {
                return Err(StoreError::Refused(format!(
                    "cannot assign {who}: it is an Autotask account; give --contract, --product and --material-code"
                )));
            }
            (false, Some(_)) => {
                return Err(StoreError::Refused(format!(
                    "cannot assign {who}: contract, product and material code apply to Autotask accounts only"
                )));
            }
            _ => {}
        }
        if let Some(holder) = self.live_assignment(service_id).await? {
            return Err(refused_held(&who, &holder));
        }
        // History stays true: a new holder starts no earlier than the last one stopped.
        if let Some(last) = self
            .assignment_history(service_id)
            .await?
            .into_iter()
            .filter_map(|a| a.ends_on.map(|e| (e, a)))
            .max_by_key(|(e, _)| *e)
            && starts_on < last.0
        {
            return Err(StoreError::Refused(format!(
                "cannot assign {who} from {starts_on}: customer {} ({}) held it until {}; start on {} or later",
                last.1.customer_id,
                last.1.customer_name,
                last.0 - chrono::Duration::days(1),
                last.0
            )));
        }
        Ok(who)
    }

    /// Makes every assignment of `all`, each checked as `assign` checks it, in one transaction:
    /// all of them or, when any is refused (checked, or assigned by another process meanwhile),
    /// none. Returns their ids in order.
    pub async fn assign_all(
        &self,
        actor: &Actor,
        all: &[NewAssignment],
    ) -> Result<Vec<AssignmentId>, StoreError> {
        let mut whos = Vec::with_capacity(all.len());
        for a in all {
            whos.push(self.assignment_refusal(a).await?);
        }
        let now = Utc::now();
        let ids: Vec<i64> = on_db!(self, p => {
            let mut tx = p.begin_write().await?;
            let mut ids = Vec::with_capacity(all.len());
            for (a, who) in all.iter().zip(&whos) {
                let inserted = sqlx::query_scalar(
                    "INSERT INTO assignments (service_id, customer_id, state, starts_on, autotask_contract_id, \
                     autotask_product_id, autotask_material_code_id, assigned_at, assigned_by, changed_at, changed_by) \
                     VALUES ($1, $2, 'assigned', $3, $4, $5, $6, $7, $8, $7, $8) RETURNING id",
                )
                .bind(a.service_id.get())
                .bind(a.customer_id.get())
                .bind(a.starts_on)
                .bind(a.coding.map(|c| c.contract_id.get()))
                .bind(a.coding.map(|c| c.product_id.get()))
                .bind(a.coding.map(|c| c.material_code_id.get()))
                .bind(now)
                .bind(actor.as_str())
                .fetch_one(&mut *tx)
                .await;
                let id: i64 = match inserted {
                    Ok(id) => id,
                    Err(e) if is_unique_violation(&e) => {
                        drop(tx);
                        // Another connection won the race (or the list names the service twice):
                        // report who holds it now.
                        return Err(match self.live_assignment(a.service_id).await? {
                            Some(holder) => refused_held(who, &holder),
                            None => StoreError::Refused(format!("cannot assign {who}: it was assigned concurrently")),
                        });
                    }
                    Err(e) => return Err(e.into()),
                };
                let after = serde_json::json!({
                    "service_id": a.service_id, "customer_id": a.customer_id, "state": "assigned",
                    "starts_on": a.starts_on, "autotask": a.coding,
                });
                write_audit!(&mut *tx, actor, "assignment", id, "assign", None, Some(after))?;
                ids.push(id);
            }
            tx.commit().await?;
            ids
        });
        ids.into_iter()
            .map(|id| Ok(AssignmentId::new(id)?))
            .collect()
    }

    /// Applies a life-cycle transition to the service's live assignment, effective `on` (a day in
    /// the business time zone). For unassign it is the first day the customer no longer holds the
    /// service: fees are owed up to it, and calls from it on are not the customer's.
    pub async fn transition(
        &self,
        actor: &Actor,
        service_id: ServiceId,
        t: Transition,
        on: NaiveDate,
    ) -> Result<AssignmentView, StoreError> {
        let service = self.service(service_id).await?;
        let Some(current) = self.live_assignment(service_id).await? else {
            return Err(StoreError::Refused(format!(
                "cannot {} service {} ({}): it is not assigned to any customer",
                t.verb(),
                service.id,
                service.name
            )));
        };
        let next = next_state(current.state(), t).map_err(|why| {
            StoreError::Refused(format!(
                "cannot {} service {} ({}) of customer {} ({}): {why}",
                t.verb(),
                service.id,
                service.name,
                current.customer_id,
                current.customer_name
            ))
        })?;
        let ends_on = (t == Transition::Unassign).then_some(on);
        let restored_on = (t == Transition::Restore).then_some(on);
        if let Some(end) = ends_on
            && end < current.starts_on
        {
            return Err(StoreError::Refused(format!(
                "cannot unassign service {} ({}) of customer {} ({}) from {end}: the assignment starts on {}",
                service.id,
                service.name,
                current.customer_id,
                current.customer_name,
                current.starts_on
            )));
        }
        let now = Utc::now();
        on_db!(self, p => {
            let mut tx = p.begin_write().await?;
            // The state in the WHERE makes a concurrent transition lose cleanly instead of both applying.
            let changed = sqlx::query(
                "UPDATE assignments SET state = $2, changed_at = $3, changed_by = $4, \
                 ends_on = COALESCE($6, ends_on), restored_on = COALESCE($7, restored_on) \
                 WHERE id = $1 AND state = $5",
            )
            .bind(current.id.get())
            .bind(next.as_str())
            .bind(now)
            .bind(actor.as_str())
            .bind(current.state().as_str())
            .bind(ends_on)
            .bind(restored_on)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed != 1 {
                return Err(StoreError::Refused(format!(
                    "cannot {} service {}: its assignment changed meanwhile; look again with `rebilld service show {}`",
                    t.verb(), service.id, service.id
                )));
            }
            write_audit!(
                &mut *tx, actor, "assignment", current.id, t.verb(),
                Some(serde_json::json!({"state": current.state().as_str()})),
                Some(serde_json::json!({"state": next.as_str(), "on": on}))
            )?;
            tx.commit().await?;
        });
        self.assignment(current.id).await
    }

    pub async fn assignment(&self, id: AssignmentId) -> Result<AssignmentView, StoreError> {
        let row: Option<AssignmentView> = on_db!(self, p => sqlx::query_as(select_assignments!("WHERE a.id = $1"))
            .bind(id.get())
            .fetch_optional(p)
            .await?);
        row.ok_or_else(|| StoreError::NotFound(format!("assignment {id}")))
    }

    /// The ASSIGNED or EXCLUDED assignment of a service, if any.
    pub async fn live_assignment(
        &self,
        service_id: ServiceId,
    ) -> Result<Option<AssignmentView>, StoreError> {
        Ok(on_db!(self, p => sqlx::query_as(
            select_assignments!("WHERE a.service_id = $1 AND a.state <> 'unassigned'"))
            .bind(service_id.get())
            .fetch_optional(p)
            .await?))
    }

    /// Live assignments (of one customer, or all), oldest first.
    pub async fn live_assignments(
        &self,
        customer: Option<CustomerId>,
    ) -> Result<Vec<AssignmentView>, StoreError> {
        Ok(on_db!(self, p => sqlx::query_as(select_assignments!(
            "WHERE a.state <> 'unassigned' AND (CAST($1 AS BIGINT) IS NULL OR a.customer_id = $1) ORDER BY a.customer_id, a.id"))
            .bind(customer.map(|c| c.get()))
            .fetch_all(p)
            .await?))
    }

    /// Every assignment (live or ended) of every service that overlaps `from..until` (days, `until`
    /// exclusive): who held what when, for billing.
    pub async fn assignments_overlapping(
        &self,
        from: NaiveDate,
        until: NaiveDate,
    ) -> Result<Vec<AssignmentView>, StoreError> {
        Ok(on_db!(self, p => sqlx::query_as(select_assignments!(
            "WHERE a.starts_on < $2 AND (a.ends_on IS NULL OR a.ends_on > $1) ORDER BY a.customer_id, a.id"))
            .bind(from)
            .bind(until)
            .fetch_all(p)
            .await?))
    }

    /// Every assignment a service has had, newest first.
    pub async fn assignment_history(
        &self,
        service_id: ServiceId,
    ) -> Result<Vec<AssignmentView>, StoreError> {
        Ok(
            on_db!(self, p => sqlx::query_as(select_assignments!("WHERE a.service_id = $1 ORDER BY a.id DESC"))
            .bind(service_id.get())
            .fetch_all(p)
            .await?),
        )
    }
}

fn refused_held(who: &str, holder: &AssignmentView) -> StoreError {
    StoreError::Refused(format!(
        "cannot assign {who}: the service is held by customer {} ({}) and is {}; it must be excluded and \
         unassigned there first",
        holder.customer_id,
        holder.customer_name,
        holder.state()
    ))
}
