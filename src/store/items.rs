//! Items.
