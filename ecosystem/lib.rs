//! The ecosystem on ringloop: this package holds examples and tests only (hyper, axum, TLS,
//! WebSocket, tokio-compat, tokio-console), kept out of the library's package so that its first
//! build stays small. See the README's examples table for the commands.
