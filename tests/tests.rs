//! Integration tests, one binary: the real `trtc-usage` driven against the
//! bundled simulator, as a user would.

mod cli;
mod credentials;
mod export;
mod faults;
mod readers;
mod s3;
mod util;
