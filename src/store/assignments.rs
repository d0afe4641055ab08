//! Assignments.
pub struct AssignmentView;
