//! Integration tests of relaycb-server: one binary, handlers through `oneshot` and a real server on `127.0.0.1:0`.
