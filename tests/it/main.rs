//! The one integration-test binary (each extra test binary would link the AWS SDK again).

mod cli;
mod config;
mod daemon;
mod fake_creds;
mod fake_lambda;
mod fake_otlp;
mod fake_xray;
mod fake_xray_selftest;
mod fuzz;
mod fuzz_otlp;
mod grpc;
mod grpc_abuse;
mod lambda;
mod lambda_otlp;
mod layout;
mod logs;
mod metrics;
mod otlp;
mod proxy;
mod reliability;
mod security;
mod skew;
mod soak;
mod spool;
mod upload;
