//! The service catalogue.
pub struct ServiceImport;
pub struct ServiceUserImport;
