//! The set-up phase of the load run: SIPp places calls while the members
//! mix (`CONFGATE_LOAD_SIPP=RATE:CALLS`), and their INVITE → 200 times are
//! read from its RTT trace.
#![allow(clippy::disallowed_methods)] // a benchmark reads the clock

use super::*;

/// The SIPp scenario; each row writes it next to SIPp's output files.
pub(crate) const SIPP_SCENARIO: &str = include_str!("sipp_setup.xml");
/// How long a SIPp call stays in its room (the scenario's pause).
pub(crate) const SIPP_HOLD_SECS: f64 = 1.0;
/// What the last SIPp calls may take beyond placing and holding them: SIPp
/// starting, and an INVITE or BYE retransmitted twice (T1 = 500 ms).
pub(crate) const SIPP_SLACK_SECS: f64 = 3.0;
/// How long after the measured window SIPp may take to exit before it is killed.
pub(crate) const SIPP_GRACE: Duration = Duration::from_secs(5);
/// What the set-up calls name their rooms with (`X-Conference-Id: sipp7`).
pub(crate) const SIPP_ROOM_PREFIX: &str = "sipp";

/// Calls SIPp sets up in each row's measured window
/// (`CONFGATE_LOAD_SIPP=RATE:CALLS`).
#[derive(Clone, Copy)]
pub(crate) struct SippLoad {
    pub(crate) rate: f64,
    pub(crate) calls: u64,
}

impl SippLoad {
    pub(crate) fn parse(spec: &str) -> SippLoad {
        let load = spec.split_once(':').and_then(|(rate, calls)| {
            let rate: f64 = rate.trim().parse().ok()?;
            let calls: u64 = calls.trim().replace('_', "").parse().ok()?;
            (rate.is_finite() && rate > 0.0 && calls > 0).then_some(SippLoad { rate, calls })
        });
        load.unwrap_or_else(|| {
            panic!("CONFGATE_LOAD_SIPP: {spec:?} is not RATE:CALLS (calls/s and calls, e.g. 500:10000)")
        })
    }

    /// The measured window the calls need: placing them, the last one's
    /// stay in its room, and slack.
    pub(crate) fn secs(&self) -> u64 {
        (self.calls as f64 / self.rate + SIPP_HOLD_SECS + SIPP_SLACK_SECS).ceil() as u64
    }

    /// Calls open at once before SIPp holds new ones back: three times what
    /// the rate keeps open, so that only set-ups slower than two seconds
    /// bring the rate down.
    pub(crate) fn limit(&self) -> u64 {
        ((3.0 * self.rate * SIPP_HOLD_SECS).ceil() as u64).max(10)
    }
}

pub(crate) fn sipp_installed() -> bool {
    Command::new("sipp")
        .arg("-v")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// The first of four free UDP ports in a row, outside the daemon's RTP
/// range: SIPp's SIP port, its media port, its control port (bound on
/// 0.0.0.0) and the media port + 2, which SIPp binds too. Not 5060, 6000 and
/// 8888, SIPp's defaults, which another SIPp on the machine may hold.
pub(crate) fn free_sipp_ports() -> Option<u16> {
    (45_000u16..60_000).step_by(4).find(|&base| {
        let held = [
            UdpSocket::bind(("127.0.0.1", base)),
            UdpSocket::bind(("127.0.0.1", base + 1)),
            UdpSocket::bind(("0.0.0.0", base + 2)),
            UdpSocket::bind(("127.0.0.1", base + 3)),
        ];
        held.iter().all(Result::is_ok)
    })
}

/// CPU seconds of the children this process has waited for.
pub(crate) fn children_cpu() -> f64 {
    // SAFETY: rusage is plain data; all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one plain struct we own.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// What the daemon reported about the SIPp calls' rooms.
#[derive(Default)]
pub(crate) struct SippSeen {
    pub(crate) joined: u64,
    /// Members that left, by reason (`hangup` is the caller's BYE).
    pub(crate) left: BTreeMap<&'static str, u64>,
    /// Events lost because this watcher fell behind.
    pub(crate) missed: u64,
}

/// Count joins and leaves in SIPp's rooms from the daemon's events.
pub(crate) fn watch_sipp_rooms(
    rt: &tokio::runtime::Runtime,
    daemon: &Daemon,
) -> (Arc<Mutex<SippSeen>>, tokio::task::JoinHandle<()>) {
    use tokio::sync::broadcast::error::RecvError;
    let seen = Arc::new(Mutex::new(SippSeen::default()));
    let mut events = daemon.subscribe();
    let counts = seen.clone();
    let task = rt.spawn(async move {
        loop {
            let event = events.recv().await;
            let mut seen = counts.lock().unwrap_or_else(|e| e.into_inner());
            match event {
                Ok(Event::MemberJoined { room, .. }) if room.starts_with(SIPP_ROOM_PREFIX) => {
                    seen.joined += 1;
                }
                Ok(Event::MemberLeft { room, reason, .. })
                    if room.starts_with(SIPP_ROOM_PREFIX) =>
                {
                    *seen.left.entry(reason).or_default() += 1;
                }
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => seen.missed += n,
                Err(RecvError::Closed) => break,
            }
        }
    });
    (seen, task)
}

/// A SIPp process placing the set-up calls.
pub(crate) struct SippRun {
    pub(crate) child: Child,
    pub(crate) dir: PathBuf,
    pub(crate) cpu0: f64,
}

/// Start SIPp against `server`, quitting after `secs` at the latest, with
/// its scenario and output in a directory of its own.
pub(crate) fn start_sipp(
    load: &SippLoad,
    server: SocketAddr,
    secs: u64,
    row: usize,
) -> Result<SippRun, String> {
    let base = free_sipp_ports().ok_or("no four free UDP ports in a row in 45000-59999")?;
    let dir = std::env::temp_dir().join(format!("confgate-load-sipp-{}-{row}", std::process::id()));
    let io = |what: &Path, e: std::io::Error| format!("{}: {e}", what.display());
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    let scenario = dir.join("sipp_setup.xml");
    std::fs::write(&scenario, SIPP_SCENARIO).map_err(|e| io(&scenario, e))?;
    let file = |name: &str| {
        let path = dir.join(name);
        std::fs::File::create(&path).map_err(|e| io(&path, e))
    };
    let (stdout, stderr) = (file("sipp.out")?, file("sipp.err")?);
    let cpu0 = children_cpu();
    let child = Command::new("sipp")
        .arg(server.to_string())
        .args(["-sf", "sipp_setup.xml", "-i", "127.0.0.1"])
        .args(["-p", &base.to_string()])
        .args(["-mp", &(base + 1).to_string()])
        .args(["-cp", &(base + 2).to_string()])
        .args(["-r", &load.rate.to_string()])
        .args(["-m", &load.calls.to_string()])
        .args(["-l", &load.limit().to_string()])
        .args(["-timeout", &format!("{secs}s")])
        .args(["-nostdin", "-trace_rtt", "-rtt_freq", "1"])
        .args(["-trace_stat", "-stf", "stat.csv", "-fd", "1"])
        .args(["-trace_err", "-error_file", "errors.log"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(|e| {
            std::fs::remove_dir_all(&dir).ok();
            format!("sipp did not start: {e}")
        })?;
    Ok(SippRun { child, dir, cpu0 })
}

/// The set-up calls of one row, as SIPp counted and timed them.
pub(crate) struct SippOutcome {
    pub(crate) placed: u64,
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    /// SIPp's failure counters that are not zero (`MaxUDPRetrans`, ...).
    pub(crate) causes: Vec<(String, u64)>,
    /// Answers and requests SIPp did not expect, by status code or method.
    pub(crate) unexpected: BTreeMap<String, u64>,
    pub(crate) retransmissions: u64,
    /// Messages for calls SIPp had already ended, and for no call it knew.
    pub(crate) stray: u64,
    /// INVITE to 200, ms, sorted.
    pub(crate) setup_ms: Vec<f64>,
    /// Answered calls per second, from their INVITEs' spread.
    pub(crate) rate: Option<f64>,
    /// The step SIPp's clock moves in, when its times show one.
    pub(crate) step_ms: Option<f64>,
    pub(crate) cpu_percent: f64,
    pub(crate) status: ExitStatus,
    pub(crate) killed: bool,
    pub(crate) seen: SippSeen,
    /// Where SIPp's files were left, when something went wrong.
    pub(crate) kept: Option<PathBuf>,
}

/// The names and values of the last row of SIPp's `-trace_stat` file.
pub(crate) fn sipp_stats(text: &str) -> Option<HashMap<String, String>> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next()?;
    let last = lines.next_back()?;
    Some(
        header
            .split(';')
            .zip(last.split(';'))
            .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
            .collect(),
    )
}

/// (INVITE instant, INVITE-to-200 time), in ms, from SIPp's RTT trace
/// (`Date_ms;response_time_ms;rtd_no`, the date being the 200's).
pub(crate) fn sipp_setup_times(text: &str) -> Vec<(f64, f64)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(';');
            let date: f64 = fields.next()?.trim().parse().ok()?;
            let time: f64 = fields.next()?.trim().parse().ok()?;
            (date.is_finite() && time.is_finite() && time >= 0.0).then_some((date - time, time))
        })
        .collect()
}

/// What SIPp's error log says it received unexpectedly: the status code of
/// each such response, or the method of each such request.
pub(crate) fn sipp_unexpected(log: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (at, mark) in log.match_indices("received '") {
        let first = log[at + mark.len()..].lines().next().unwrap_or("");
        let mut words = first.split_whitespace();
        let key = match (words.next(), words.next()) {
            (Some("SIP/2.0"), Some(code)) => code.to_owned(),
            (Some(method), _) => method.to_owned(),
            _ => continue,
        };
        *out.entry(key).or_default() += 1;
    }
    out
}

/// SIPp 3.6 times calls with CLOCK_MONOTONIC_COARSE, which moves in kernel
/// ticks (4 ms at HZ=250). The tick, when every time is a whole number of
/// them.
pub(crate) fn coarse_step_ms(times: &[f64]) -> Option<f64> {
    let mut res = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_getres writes one plain struct we own.
    if unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut res) } != 0 {
        return None;
    }
    let step = res.tv_sec as f64 * 1e3 + res.tv_nsec as f64 / 1e6;
    let whole = |t: f64| (t - (t / step).round() * step).abs() < 0.01;
    (step >= 1.5 && !times.is_empty() && times.iter().all(|&t| whole(t))).then_some(step)
}

/// Nearest-rank quantile of sorted values.
pub(crate) fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
    sorted.get(rank - 1).copied()
}

/// Wait for SIPp (killing it past `grace`) and read what it wrote.
pub(crate) fn finish_sipp(
    mut run: SippRun,
    grace: Duration,
    window_secs: f64,
) -> Result<SippOutcome, String> {
    let deadline = Instant::now() + grace;
    let mut killed = false;
    let status = loop {
        match run.child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                killed = true;
                run.child.kill().ok();
                break run.child.wait().map_err(|e| format!("sipp: {e}"))?;
            }
            Err(e) => return Err(format!("sipp: {e}")),
        }
    };
    let cpu = children_cpu() - run.cpu0;
    let read = |name: &str| {
        let bytes = std::fs::read(run.dir.join(name)).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    let kept = format!("(SIPp's files are in {})", run.dir.display());
    let Some(stats) = sipp_stats(&read("stat.csv")) else {
        let err = read("sipp.err");
        let why = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message");
        return Err(format!(
            "sipp exited ({status}) without statistics: {why} {kept}"
        ));
    };
    let count = |name: &str| stats.get(name).and_then(|v| v.parse::<u64>().ok());
    let (Some(placed), Some(ok), Some(failed)) = (
        count("TotalCallCreated"),
        count("SuccessfulCall(C)"),
        count("FailedCall(C)"),
    ) else {
        return Err(format!("sipp's statistics lack the call counts {kept}"));
    };
    let mut causes: Vec<(String, u64)> = stats
        .keys()
        .filter(|name| {
            name.starts_with("Failed") && name.ends_with("(C)") && *name != "FailedCall(C)"
        })
        .filter_map(|name| {
            let n = count(name).filter(|&n| n > 0)?;
            let cause = name.trim_start_matches("Failed").trim_end_matches("(C)");
            Some((cause.to_owned(), n))
        })
        .collect();
    causes.sort();
    let rtt = std::fs::read_dir(&run.dir)
        .into_iter()
        .flatten()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with("_rtt.csv"))
        .and_then(|e| std::fs::read(e.path()).ok())
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    let times = sipp_setup_times(&rtt);
    let mut setup_ms: Vec<f64> = times.iter().map(|&(_, t)| t).collect();
    setup_ms.sort_by(f64::total_cmp);
    let first = times.iter().map(|&(at, _)| at).min_by(f64::total_cmp);
    let last = times.iter().map(|&(at, _)| at).max_by(f64::total_cmp);
    let rate = match (first, last) {
        (Some(a), Some(b)) if b > a => Some((times.len() - 1) as f64 * 1e3 / (b - a)),
        _ => None,
    };
    let outcome = SippOutcome {
        placed,
        ok,
        failed,
        causes,
        unexpected: sipp_unexpected(&read("errors.log")),
        retransmissions: count("Retransmissions(C)").unwrap_or(0),
        stray: count("DeadCallMsgs(C)").unwrap_or(0) + count("OutOfCallMsgs(C)").unwrap_or(0),
        step_ms: coarse_step_ms(&setup_ms),
        setup_ms,
        rate,
        cpu_percent: 100.0 * cpu / window_secs,
        status,
        killed,
        seen: SippSeen::default(),
        kept: None,
    };
    let clean = outcome.failed == 0
        && outcome.ok == outcome.placed
        && !outcome.killed
        && outcome.unexpected.is_empty();
    let kept = if clean {
        std::fs::remove_dir_all(&run.dir).ok();
        None
    } else {
        Some(run.dir)
    };
    Ok(SippOutcome { kept, ..outcome })
}

/// The line (and, when something is off, the second line) under a row.
pub(crate) fn print_sipp(load: &SippLoad, outcome: &Result<SippOutcome, String>) {
    let o = match outcome {
        Ok(o) => o,
        Err(why) => {
            println!("  SIPp: no figures: {why}");
            return;
        }
    };
    // Whole steps of a coarse clock print without decimals, and a time
    // within one step as less than a step.
    let show = |v: Option<f64>| match (v, o.step_ms) {
        (None, _) => "-".to_owned(),
        (Some(v), Some(step)) if v < step / 2.0 => format!("<{step:.0}"),
        (Some(v), Some(_)) => format!("{v:.0}"),
        (Some(v), None) => format!("{v:.1}"),
    };
    let ms = |q: f64| show(quantile(&o.setup_ms, q));
    let max = show(o.setup_ms.last().copied());
    let step = o.step_ms.map_or(String::new(), |s| {
        format!(" (SIPp's clock: {s:.0} ms steps)")
    });
    let unfinished = o.placed.saturating_sub(o.ok + o.failed);
    let rate = match o.rate {
        None => "- calls/s".to_owned(),
        Some(r) if o.ok == o.placed => format!("{r:.1} calls/s achieved"),
        Some(r) => format!("{r:.1} calls/s among the answered"),
    };
    let left: u64 = o.seen.left.values().sum();
    let hangups = o.seen.left.get("hangup").copied().unwrap_or(0);
    println!(
        "  SIPp {}/s x {}: {} placed, {} ok, {} failed{}; set-up p50 {} p99 {} max {} ms{}; {}; SIPp cpu {:.1} %; confgate: {} joined, {} left on BYE",
        load.rate,
        load.calls,
        o.placed,
        o.ok,
        o.failed,
        if unfinished > 0 { format!(", {unfinished} unfinished") } else { String::new() },
        ms(0.5),
        ms(0.99),
        max,
        step,
        rate,
        o.cpu_percent,
        o.seen.joined,
        hangups,
    );
    let mut notes = Vec::new();
    if o.placed < load.calls {
        notes.push(format!(
            "{} of {} calls not placed",
            load.calls - o.placed,
            load.calls
        ));
    }
    if !o.causes.is_empty() {
        let causes: Vec<String> = o.causes.iter().map(|(c, n)| format!("{c} {n}")).collect();
        notes.push(format!("failures: {}", causes.join(", ")));
    }
    if !o.unexpected.is_empty() {
        let got: Vec<String> = o
            .unexpected
            .iter()
            .map(|(k, n)| format!("{k} x{n}"))
            .collect();
        notes.push(format!("unexpected: {}", got.join(", ")));
    }
    if o.retransmissions > 0 {
        notes.push(format!("{} retransmissions by SIPp", o.retransmissions));
    }
    if o.stray > 0 {
        notes.push(format!("{} messages for ended or unknown calls", o.stray));
    }
    if left > hangups {
        let other: Vec<String> = o
            .seen
            .left
            .iter()
            .filter(|(r, _)| **r != "hangup")
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        notes.push(format!("confgate ended calls: {}", other.join(", ")));
    }
    if o.seen.missed > 0 {
        notes.push(format!("{} daemon events missed", o.seen.missed));
    }
    if o.killed {
        notes.push(format!(
            "SIPp killed {} s after the window",
            SIPP_GRACE.as_secs()
        ));
    } else if !o.status.success() {
        notes.push(format!("SIPp {}", o.status));
    }
    if let Some(dir) = &o.kept {
        notes.push(format!("files in {}", dir.display()));
    }
    if !notes.is_empty() {
        println!("  SIPp: {}", notes.join("; "));
    }
}
