//! Device models and block formats for godwit.
pub mod block;
