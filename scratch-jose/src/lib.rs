//! Scratch crate: compiles host/src/jose.rs and host/src/tls.rs on their own while the host is being written.
#[path = "../../host/src/jose.rs"]
pub mod jose;
#[path = "../../host/src/tls.rs"]
pub mod tls;
