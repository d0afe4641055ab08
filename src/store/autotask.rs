//! Tables of the autotask module (filled in by its issue).
