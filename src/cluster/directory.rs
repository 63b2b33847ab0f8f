//! The room directory in Redis: `confgate:room:<room>` names the node that
//! holds a room. [`Directory::claim`] answers a call at once (within
//! [`DEADLINE`], whatever Redis does); a background task, driven by the
//! sans-IO [`Claims`], refreshes our claims, releases closed rooms,
//! reconnects after an outage and claims again the rooms still open here.

#![allow(clippy::disallowed_methods)] // an edge: reads the clock for the core

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Script, Value};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::claims::{ClaimResult, Claims, Holding, Notice, Op, RefreshResult};
use crate::config::ClusterSettings;

/// How long one directory operation may take before the call goes on
/// without it (the room opens locally).
pub const DEADLINE: Duration = Duration::from_millis(300);
/// How long a cluster-wide listing may take.
const LIST_DEADLINE: Duration = Duration::from_secs(2);
/// The most rooms a listing returns.
const LIST_MAX: usize = 10_000;
/// The key prefix of rooms.
pub const PREFIX: &str = "confgate:room:";
/// The key prefix of nodes: `confgate:node:<cluster.node>` holds the node's
/// control TCP address (`cluster.control`), with the claims' TTL.
pub const NODE_PREFIX: &str = "confgate:node:";

/// Take the key if it is free, or keep it if it already names us (a node
/// restarted with its rooms): 1; else the value that is there.
const CLAIM: &str = r#"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not v then return 0 end
return v
"#;

/// Push the expiry out only while the key names us: 1; 0 if it is gone;
/// else the value that is there.
const REFRESH: &str = r#"
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not v then return 0 end
return v
"#;

/// Delete the key only while it names us.
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

/// Who holds a room, as [`Directory::claim`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// This node: open the room here.
    Here,
    /// Another node: bridge the caller there.
    There(SocketAddr),
    /// The directory could not say (unreachable, too slow, or the key holds
    /// something that is not a node address): open the room here.
    Standalone,
}

/// The directory could not be read in time.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("cluster directory unreachable")]
pub struct Unreachable;

/// What the directory counts, for the metrics.
#[derive(Debug, Default)]
pub struct Counters {
    up: AtomicBool,
    here: AtomicU64,
    there: AtomicU64,
    standalone: AtomicU64,
}

impl Counters {
    /// Whether the directory answers.
    pub fn up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Claims made by [`Directory::claim`], by result: here, there, standalone.
    pub fn claims(&self) -> [(&'static str, u64); 3] {
        [
            ("here", self.here.load(Ordering::Relaxed)),
            ("there", self.there.load(Ordering::Relaxed)),
            ("standalone", self.standalone.load(Ordering::Relaxed)),
        ]
    }

    fn count(&self, owner: Owner) {
        let c = match owner {
            Owner::Here => &self.here,
            Owner::There(_) => &self.there,
            Owner::Standalone => &self.standalone,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// The room directory of this node.
pub struct Directory {
    client: Client,
    node: SocketAddr,
    /// The node as stored in keys.
    value: String,
    ttl_ms: u64,
    /// Our control TCP address as announced, if any.
    control: Option<SocketAddr>,
    connection: Mutex<Option<MultiplexedConnection>>,
    claims: Mutex<Claims>,
    wake: Notify,
    counters: Arc<Counters>,
    claim: Script,
    refresh: Script,
    release: Script,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

fn key(room: &str) -> String {
    format!("{PREFIX}{room}")
}

/// A key's value as a node address.
fn node_of(v: &[u8]) -> Option<SocketAddr> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

impl Directory {
    /// Start the directory and its background task (which stops with
    /// `shutdown`). It connects in the background: until it is up, claims
    /// answer [`Owner::Standalone`].
    pub fn start(
        settings: &ClusterSettings,
        shutdown: CancellationToken,
    ) -> Result<Arc<Directory>, redis::RedisError> {
        let client = Client::open(settings.redis.as_str())?;
        let now = Instant::now();
        let mut claims = Claims::new(settings.claim_ttl, now);
        if settings.control.is_some() {
            claims = claims.announcing(now);
        }
        let dir = Arc::new(Directory {
            client,
            node: settings.node,
            value: settings.node.to_string(),
            ttl_ms: u64::try_from(settings.claim_ttl.as_millis()).unwrap_or(u64::MAX),
            control: settings.control,
            connection: Mutex::new(None),
            claims: Mutex::new(claims),
            wake: Notify::new(),
            counters: Arc::default(),
            claim: Script::new(CLAIM),
            refresh: Script::new(REFRESH),
            release: Script::new(RELEASE),
        });
        let task = dir.clone();
        tokio::spawn(async move { task.run(shutdown).await });
        Ok(dir)
    }

    /// This node's address, the value of the keys it holds.
    pub fn node(&self) -> SocketAddr {
        self.node
    }

    /// What the metrics read.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Whether the directory answers.
    pub fn is_up(&self) -> bool {
        self.core().is_up()
    }

    /// Rooms open here that the directory has as ours.
    pub fn held(&self) -> Vec<String> {
        self.core()
            .rooms()
            .filter(|(_, h)| matches!(h, Holding::Held { .. }))
            .map(|(r, _)| r.to_owned())
            .collect()
    }

    /// Rooms open here that another node holds in the directory (`None`: a
    /// key that names no node).
    pub fn lost(&self) -> Vec<(String, Option<SocketAddr>)> {
        self.core()
            .rooms()
            .filter_map(|(r, h)| match h {
                Holding::Lost(owner) => Some((r.to_owned(), owner)),
                _ => None,
            })
            .collect()
    }

    fn core(&self) -> MutexGuard<'_, Claims> {
        self.claims.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn connection(&self) -> Option<MultiplexedConnection> {
        self.connection
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Who holds `room`, claiming it for this node if nobody does. `Here`
    /// and `Standalone` mean the room opens here: it then counts as open
    /// (as by [`Directory::room_opened`]) until [`Directory::room_closed`].
    /// Answers within [`DEADLINE`]; a Redis that is down or slow gives
    /// `Standalone`, and the claim is made when it is back.
    pub async fn claim(&self, room: &str) -> Owner {
        let owner = self.claim_inner(room).await;
        self.counters.count(owner);
        owner
    }

    async fn claim_inner(&self, room: &str) -> Owner {
        let was_open;
        // A room open here already: answer from what we know.
        match self.core().holding(room) {
            Some(Holding::Held { .. }) => return Owner::Here,
            Some(Holding::Lost(Some(addr))) => return Owner::There(addr),
            Some(Holding::Lost(None)) => return Owner::Standalone,
            _ => {}
        }
        let conn = {
            let mut core = self.core();
            was_open = core.holding(room).is_some();
            match (core.is_up(), self.connection()) {
                (true, Some(conn)) => {
                    core.claiming(room, Instant::now());
                    conn
                }
                _ => {
                    core.room_opened(room, Instant::now());
                    return Owner::Standalone;
                }
            }
        };
        let result = self.run_claim(conn, room).await;
        let owner = match result {
            Ok(ClaimResult::Ours) => Owner::Here,
            Ok(ClaimResult::Theirs(addr)) => Owner::There(addr),
            Ok(ClaimResult::Garbled) => Owner::Standalone,
            Err(()) => Owner::Standalone,
        };
        {
            let mut core = self.core();
            let now = Instant::now();
            match result {
                // Not open here before: the caller goes there, nothing was lost.
                Ok(ClaimResult::Theirs(_)) if !was_open => {
                    core.connected(now);
                    core.forget(room);
                }
                Ok(r) => core.claimed(room, r, now),
                Err(()) => core.failed(now),
            }
        }
        self.after_input();
        owner
    }

    /// A room opened here (without [`Directory::claim`], or again): it is
    /// claimed in the background.
    pub fn room_opened(&self, room: &str) {
        self.core().room_opened(room, Instant::now());
        self.wake.notify_one();
    }

    /// A room closed here: its key is released in the background.
    pub fn room_closed(&self, room: &str) {
        self.core().room_closed(room, Instant::now());
        self.wake.notify_one();
    }

    /// Who holds `room` in the directory, without claiming it.
    pub async fn owner(&self, room: &str) -> Result<Option<SocketAddr>, Unreachable> {
        self.address_at(key(room)).await
    }

    /// The address the value of `key` names, if the key is there.
    async fn address_at(&self, key: String) -> Result<Option<SocketAddr>, Unreachable> {
        let mut conn = self.connection().ok_or(Unreachable)?;
        let mut cmd = redis::cmd("GET");
        cmd.arg(key);
        let get = cmd.query_async::<Option<Vec<u8>>>(&mut conn);
        match tokio::time::timeout(DEADLINE, get).await {
            Ok(Ok(v)) => Ok(v.as_deref().and_then(node_of)),
            _ => {
                self.fail();
                Err(Unreachable)
            }
        }
    }

    /// Every room in the directory with the node that holds it, sorted by
    /// room (at most 10 000; keys naming no node are left out).
    pub async fn rooms(&self) -> Result<Vec<(String, SocketAddr)>, Unreachable> {
        self.list(PREFIX).await
    }

    /// Every node that has announced its control address (ourselves
    /// included), sorted by node; at most 10 000.
    pub async fn nodes(&self) -> Result<Vec<(SocketAddr, SocketAddr)>, Unreachable> {
        self.list(NODE_PREFIX).await
    }

    /// The keys under `prefix` with the addresses they name, sorted, within
    /// [`LIST_DEADLINE`].
    async fn list<T: std::str::FromStr + Ord>(
        &self,
        prefix: &str,
    ) -> Result<Vec<(T, SocketAddr)>, Unreachable> {
        let conn = self.connection().ok_or(Unreachable)?;
        match tokio::time::timeout(LIST_DEADLINE, scan(conn, prefix)).await {
            Ok(Ok(mut found)) => {
                found.sort();
                Ok(found)
            }
            _ => {
                self.fail();
                Err(Unreachable)
            }
        }
    }

    /// The control address `node` announced, if it is in the directory.
    pub async fn control_of(&self, node: SocketAddr) -> Result<Option<SocketAddr>, Unreachable> {
        self.address_at(format!("{NODE_PREFIX}{node}")).await
    }

    async fn run_announce(&self, mut conn: MultiplexedConnection) -> Result<(), ()> {
        let Some(control) = self.control else {
            return Ok(());
        };
        let mut cmd = redis::cmd("SET");
        cmd.arg(format!("{NODE_PREFIX}{}", self.node))
            .arg(control.to_string())
            .arg("PX")
            .arg(self.ttl_ms);
        let set = cmd.query_async::<Value>(&mut conn);
        match tokio::time::timeout(DEADLINE, set).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(()),
        }
    }

    async fn run_claim(
        &self,
        mut conn: MultiplexedConnection,
        room: &str,
    ) -> Result<ClaimResult, ()> {
        let mut invocation = self.claim.key(key(room));
        invocation.arg(&self.value).arg(self.ttl_ms);
        let call = invocation.invoke_async::<Value>(&mut conn);
        let v = match tokio::time::timeout(DEADLINE, call).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, room, "cluster claim failed");
                return Err(());
            }
            Err(_) => return Err(()),
        };
        Ok(match v {
            Value::Int(1) => ClaimResult::Ours,
            // The script runs atomically, so the key cannot vanish between
            // its SET and GET; a 0 would be another script's: local for now.
            Value::Int(_) => ClaimResult::Garbled,
            Value::BulkString(b) => match node_of(&b) {
                Some(addr) if addr == self.node => ClaimResult::Ours,
                Some(addr) => ClaimResult::Theirs(addr),
                None => {
                    warn!(
                        room,
                        value = %String::from_utf8_lossy(&b),
                        "cluster directory: the room's key names no node; the room opens here, the key is left alone"
                    );
                    ClaimResult::Garbled
                }
            },
            other => {
                warn!(room, reply = ?other, "cluster directory: unexpected claim reply");
                return Err(());
            }
        })
    }

    async fn run_refresh(
        &self,
        mut conn: MultiplexedConnection,
        room: &str,
    ) -> Result<RefreshResult, ()> {
        let mut invocation = self.refresh.key(key(room));
        invocation.arg(&self.value).arg(self.ttl_ms);
        let call = invocation.invoke_async::<Value>(&mut conn);
        match tokio::time::timeout(DEADLINE, call).await {
            Ok(Ok(Value::Int(1))) => Ok(RefreshResult::Extended),
            Ok(Ok(Value::Int(_))) => Ok(RefreshResult::Missing),
            Ok(Ok(Value::BulkString(b))) => Ok(RefreshResult::Taken(node_of(&b))),
            _ => Err(()),
        }
    }

    async fn run_release(&self, mut conn: MultiplexedConnection, room: &str) -> Result<(), ()> {
        let mut invocation = self.release.key(key(room));
        invocation.arg(&self.value);
        let call = invocation.invoke_async::<Value>(&mut conn);
        match tokio::time::timeout(DEADLINE, call).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(()),
        }
    }

    async fn connect(&self) -> Result<MultiplexedConnection, ()> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(DEADLINE))
            .set_response_timeout(Some(DEADLINE));
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config);
        match tokio::time::timeout(DEADLINE * 2, conn).await {
            Ok(Ok(mut conn)) => {
                // Make sure it answers before it counts as up.
                let cmd = redis::cmd("PING");
                let ping = cmd.query_async::<Value>(&mut conn);
                match tokio::time::timeout(DEADLINE, ping).await {
                    Ok(Ok(_)) => Ok(conn),
                    _ => Err(()),
                }
            }
            _ => Err(()),
        }
    }

    /// An operation failed: drop the connection, the core goes down.
    fn fail(&self) {
        self.core().failed(Instant::now());
        self.after_input();
    }

    /// Report what the core has to say; wake the task for what it has to do.
    fn after_input(&self) {
        let notices: Vec<Notice> = {
            let mut core = self.core();
            std::iter::from_fn(|| core.poll_notice()).collect()
        };
        for n in notices {
            match n {
                Notice::Down => {
                    *self.connection.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    self.counters.up.store(false, Ordering::Relaxed);
                    warn!("cluster directory unreachable: rooms are local");
                }
                Notice::Up { outage } => {
                    self.counters.up.store(true, Ordering::Relaxed);
                    match outage {
                        Some(d) => info!(
                            outage_ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
                            "cluster directory reachable again: claiming the rooms open here"
                        ),
                        None => info!(node = %self.node, "cluster directory reachable"),
                    }
                }
                Notice::Lost { room, owner } => match owner {
                    Some(owner) => {
                        warn!(room, %owner, "cluster directory: another node holds a room open here")
                    }
                    None => warn!(
                        room,
                        "cluster directory: a room open here has a key that names no node"
                    ),
                },
            }
        }
        self.wake.notify_one();
    }

    /// The background task: perform what the core hands out, sleep until
    /// its next deadline or new input.
    async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let op = self.core().poll_op(Instant::now());
            let Some(op) = op else {
                let at = self.core().poll_timeout();
                let sleep = match at {
                    Some(at) => tokio::time::sleep_until(at.into()),
                    None => tokio::time::sleep(Duration::from_secs(3600)),
                };
                tokio::select! {
                    _ = sleep => {}
                    _ = self.wake.notified() => {}
                    _ = shutdown.cancelled() => return,
                }
                continue;
            };
            if shutdown.is_cancelled() {
                return;
            }
            self.perform(op).await;
            self.after_input();
        }
    }

    async fn perform(&self, op: Op) {
        let conn = match (&op, self.connection()) {
            (Op::Connect, _) => None,
            (_, Some(conn)) => Some(conn),
            (_, None) => {
                self.core().failed(Instant::now());
                return;
            }
        };
        let result = match (op, conn) {
            (Op::Connect, _) => match self.connect().await {
                Ok(conn) => {
                    *self.connection.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn);
                    self.core().connected(Instant::now());
                    Ok(())
                }
                Err(()) => Err(()),
            },
            (Op::Claim(room), Some(conn)) => self.run_claim(conn, &room).await.map(|r| {
                self.core().claimed(&room, r, Instant::now());
            }),
            (Op::Refresh(room), Some(conn)) => self.run_refresh(conn, &room).await.map(|r| {
                self.core().refreshed(&room, r, Instant::now());
            }),
            (Op::Release(room), Some(conn)) => self.run_release(conn, &room).await.map(|()| {
                self.core().released(&room, Instant::now());
            }),
            (Op::Announce, Some(conn)) => self.run_announce(conn).await.map(|()| {
                self.core().announced(Instant::now());
            }),
            (_, None) => Err(()),
        };
        if result.is_err() {
            self.core().failed(Instant::now());
        }
    }
}

/// SCAN the keys under `prefix` and read their values, up to
/// [`LIST_MAX`]: (the rest of the key, the address the value names); keys
/// whose value names no address are left out.
async fn scan<T: std::str::FromStr>(
    mut conn: MultiplexedConnection,
    prefix: &str,
) -> redis::RedisResult<Vec<(T, SocketAddr)>> {
    let mut keys: Vec<String> = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(500)
            .query_async(&mut conn)
            .await?;
        keys.extend(batch);
        cursor = next;
        if cursor == 0 || keys.len() >= LIST_MAX {
            break;
        }
    }
    keys.sort();
    keys.dedup();
    keys.truncate(LIST_MAX);
    let mut found = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(500) {
        let values: Vec<Option<Vec<u8>>> =
            redis::cmd("MGET").arg(chunk).query_async(&mut conn).await?;
        for (k, v) in chunk.iter().zip(values) {
            let name = k.strip_prefix(prefix).and_then(|n| n.parse::<T>().ok());
            let (Some(name), Some(addr)) = (name, v.as_deref().and_then(node_of)) else {
                continue;
            };
            found.push((name, addr));
        }
    }
    Ok(found)
}
