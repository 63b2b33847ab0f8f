//! Running a test again in a network namespace of its own with only `lo`
//! up (`unshare -n`, as root): there the daemon, the phones and the
//! browser have nothing but 127.0.0.1, and nothing can leave the machine.

use std::time::Duration;

/// Set in the namespaced run.
const INSIDE: &str = "CONFGATE_TEST_ONLY_LO";

/// Whether the caller should run its test body here: in the namespaced
/// run, or where no namespace can be made (then on the host's loopback,
/// said on stderr). Otherwise the test `name` of this binary runs again in
/// a fresh namespace, its output is shown, and it must pass.
pub async fn run_here(name: &str, limit: Duration) -> bool {
    if std::env::var_os(INSIDE).is_some() {
        return true;
    }
    let up_lo = "ip link set lo up";
    let possible = std::process::Command::new("unshare")
        .args(["-n", "sh", "-c", up_lo])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !possible {
        eprintln!("no network namespace here (unshare -n): running on the host's loopback");
        return true;
    }
    let exe = std::env::current_exe().expect("this test binary");
    let run = tokio::process::Command::new("unshare")
        .args(["-n", "sh", "-c", &format!("{up_lo} && exec \"$0\" \"$@\"")])
        .arg(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(INSIDE, "1")
        .kill_on_drop(true)
        .status();
    let status = tokio::time::timeout(limit, run)
        .await
        .unwrap_or_else(|_| panic!("{name} ends within {limit:?} in its namespace"))
        .expect("unshare runs");
    assert!(
        status.success(),
        "{name} in its own network namespace: {status}"
    );
    false
}
