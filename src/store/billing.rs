//! Tables of the billing module (filled in by its issue).
