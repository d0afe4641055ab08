//! Tables of the calls module (filled in by its issue).
