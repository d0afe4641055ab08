//! The assignment life-cycle (DESIGN §1):
//!
//! ```text
//!  (free) --assign--> ASSIGNED --exclude--> EXCLUDED --unassign--> (free)
//!                        ^                      |
//!                        +------- restore ------+
//! ```
//!
//! `next_state` is the one place the allowed transitions are written down; the store applies it
//! inside a transaction and the database's partial unique index backs up "one live assignment per
//! service".

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{ContractId, MaterialCodeId, ProductId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssignmentState {
    Assigned,
    Excluded,
    /// History: the service was freed. Not a live assignment.
    Unassigned,
}

impl AssignmentState {
    pub fn as_str(self) -> &'static str {
        match self {
            AssignmentState::Assigned => "assigned",
            AssignmentState::Excluded => "excluded",
            AssignmentState::Unassigned => "unassigned",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "assigned" => Some(AssignmentState::Assigned),
            "excluded" => Some(AssignmentState::Excluded),
            "unassigned" => Some(AssignmentState::Unassigned),
            _ => None,
        }
    }

    pub fn is_live(self) -> bool {
        self != AssignmentState::Unassigned
    }
}

impl fmt::Display for AssignmentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str().to_ascii_uppercase())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// "Trash can": leave the service off the next invoice(s).
    Exclude,
    /// Put an excluded service back on the invoice.
    Restore,
    /// "Minus": free the service. Only from EXCLUDED.
    Unassign,
}

impl Transition {
    pub fn verb(self) -> &'static str {
        match self {
            Transition::Exclude => "exclude",
            Transition::Restore => "restore",
            Transition::Unassign => "unassign",
        }
    }
}

/// The state a live assignment moves to, or why it cannot.
pub fn next_state(from: AssignmentState, t: Transition) -> Result<AssignmentState, String> {
    use AssignmentState::*;
    match (from, t) {
        (Assigned, Transition::Exclude) => Ok(Excluded),
        (Excluded, Transition::Restore) => Ok(Assigned),
        (Excluded, Transition::Unassign) => Ok(Unassigned),
        (Assigned, Transition::Unassign) => {
            Err("it is ASSIGNED: exclude it first (trash can), then unassign".into())
        }
        (Assigned, Transition::Restore) => Err("it is ASSIGNED already, not excluded".into()),
        (Excluded, Transition::Exclude) => Err("it is EXCLUDED already".into()),
        (Unassigned, _) => Err("it is not assigned to anyone".into()),
    }
}

/// Where an Autotask customer's service is charged: contract, product and material code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutotaskCoding {
    pub contract_id: ContractId,
    pub product_id: ProductId,
    pub material_code_id: MaterialCodeId,
}

#[cfg(test)]
mod tests {
    use super::AssignmentState::*;
    use super::*;

    #[test]
    fn allowed_transitions() {
        assert_eq!(next_state(Assigned, Transition::Exclude), Ok(Excluded));
        assert_eq!(next_state(Excluded, Transition::Restore), Ok(Assigned));
        assert_eq!(next_state(Excluded, Transition::Unassign), Ok(Unassigned));
    }

    #[test]
    fn refused_transitions_say_why() {
        let e = next_state(Assigned, Transition::Unassign).unwrap_err();
        assert!(e.contains("exclude it first"), "{e}");
        assert!(next_state(Assigned, Transition::Restore).is_err());
        assert!(next_state(Excluded, Transition::Exclude).is_err());
        for t in [
            Transition::Exclude,
            Transition::Restore,
            Transition::Unassign,
        ] {
            assert!(next_state(Unassigned, t).is_err());
        }
    }

    #[test]
    fn only_unassigned_is_not_live() {
        assert!(Assigned.is_live() && Excluded.is_live() && !Unassigned.is_live());
        for s in [Assigned, Excluded, Unassigned] {
            assert_eq!(AssignmentState::parse(s.as_str()), Some(s));
        }
    }
}
