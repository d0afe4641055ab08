//! sandbox (to be built).
