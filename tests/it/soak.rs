//! The long versions of the reliability scenarios, for `make soak` (ignored by `cargo test`).
//! `make soak` runs them on the release build (`XRAY_TEST_BIN`), one at a time, and prints the
//! `figures:` lines: segments sent, delivered, spilled, rejected, and peak RSS (VmHWM).

use crate::daemon::{padded_segment, segment};
use crate::reliability::{flood_scenario, outage_scenario};
use std::time::Duration;

/// 20 s each of 503s, refused connections and hangs at 500 segments/s into a 16 MB buffer:
/// everything fits, everything is delivered exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: make soak"]
async fn soak_outage_60s_everything_fits() {
    outage_scenario("soak-outage-fits", Duration::from_secs(20), 16, segment).await;
}

/// The same outage with 1 KB segments into a 3 MB buffer: about 30 000 segments for ~2 900
/// places, so most spill over, oldest first, and are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: make soak"]
async fn soak_outage_60s_with_spillover() {
    outage_scenario("soak-outage-spill", Duration::from_secs(20), 3, |i| padded_segment(i, 1000)).await;
}

/// 30 s of UDP from two threads (every core busy) against a slow X-Ray: peak RSS stays under
/// the buffer plus 10 MB, /health answers, the counters add up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: make soak"]
async fn soak_flood_30s() {
    let buffer_mb = 16;
    let f = flood_scenario("soak-flood", Duration::from_secs(30), buffer_mb, 2).await;
    let limit_kb = (u64::from(buffer_mb) + 10) * 1024;
    assert!(f.peak_rss_kb < limit_kb, "peak RSS {} KiB over buffer + 10 MB = {limit_kb} KiB", f.peak_rss_kb);
}
