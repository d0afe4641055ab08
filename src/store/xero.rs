//! Tables of the xero module (filled in by its issue).
