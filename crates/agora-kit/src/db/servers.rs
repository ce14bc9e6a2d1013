//! PostgreSQL URLs that name several servers, read as libpq reads them:
//! `postgres://USER@HOST1:PORT1,HOST2:PORT2/DB?target_session_attrs=read-write` means "whichever
//! of these servers accepts writes", and `prefer-standby` "a standby if one answers, else any".
//!
//! sqlx connects to one server per URL, so a pool on such a URL is kept pointed at the server
//! that fits by a [`Follower`]: it finds that server before the pool opens, checks it once a
//! second on a connection of its own, and when it no longer fits (it died, or it was demoted
//! after a failover) finds the one that does and points the pool there. Connections opened
//! before the move are closed instead of handed out, and every new connection is checked before
//! it is used, so a write never lands on a standby and nothing needs a restart.
//!
//! A follower of standbys (`prefer-standby`) also judges how fresh its standby is: see
//! [`Follower::fresh`].

use std::{
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use sqlx::{AnyConnection, AnyPool, Connection as _, any::AnyConnectOptions};
use tokio::sync::Notify;

use super::DbError;

/// How often a follower checks its server.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long one server may take to accept a connection and answer the check.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a follower of standbys gives the primary's follower to check its primary.
const PRIMARY_RECHECK: Duration = Duration::from_millis(300);
/// How long the search for the primary waits for the other servers once one said it is the
/// primary (one on a higher timeline may answer a moment later).
const PRIMARY_GRACE: Duration = Duration::from_millis(200);

/// What a connection's server must be (`target_session_attrs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Any server that answers.
    Any,
    /// A primary: one that is not in recovery (`read-write`, or libpq's `primary`).
    ReadWrite,
    /// A standby if one answers, else any server (`prefer-standby`).
    PreferStandby,
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "any" => Ok(Self::Any),
            "read-write" | "primary" => Ok(Self::ReadWrite),
            "prefer-standby" => Ok(Self::PreferStandby),
            other => {
                Err(format!("target_session_attrs={other} is not supported: use any, read-write or prefer-standby"))
            }
        }
    }
}

/// One server of a URL: where it is, and how to connect to it alone.
#[derive(Debug, Clone)]
struct Server {
    shown: String,
    options: AnyConnectOptions,
}

/// The servers a URL names, in its order, and what the one to use must be.
#[derive(Debug, Clone)]
pub struct Servers {
    each: Vec<Server>,
    target: Target,
}

impl Servers {
    /// The servers of `url`, or `None` for a URL of one server without `target_session_attrs`
    /// (which sqlx takes as it is).
    pub fn parse(url: &str) -> Result<Option<Self>, DbError> {
        let bad = |why: String| DbError::UnsupportedUrl(format!("{}: {why}", super::redact(url)));
        let Some((scheme, rest)) = url.split_once("://") else { return Ok(None) };
        let (authority, tail) = rest.find(['/', '?']).map_or((rest, ""), |at| rest.split_at(at));
        let (userinfo, hosts) = authority.rsplit_once('@').map_or(("", authority), |(u, h)| (u, h));
        let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
        let mut target = None;
        let params: Vec<&str> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .filter(|p| match p.strip_prefix("target_session_attrs=") {
                Some(value) => {
                    target = Some(value);
                    false
                }
                None => true,
            })
            .collect();
        let hosts: Vec<&str> = hosts.split(',').collect();
        if hosts.len() == 1 && target.is_none() {
            return Ok(None);
        }
        let target = target.map_or(Ok(Target::Any), str::parse).map_err(bad)?;
        let at = if userinfo.is_empty() { String::new() } else { format!("{userinfo}@") };
        let query = if params.is_empty() { String::new() } else { format!("?{}", params.join("&")) };
        let each = hosts
            .into_iter()
            .map(|host| {
                if host.is_empty() {
                    return Err(bad("an empty host in the host list".to_owned()));
                }
                let one = format!("{scheme}://{at}{host}{path}{query}");
                let options = AnyConnectOptions::from_str(&one).map_err(|e| bad(e.to_string()))?;
                Ok(Server { shown: host.to_owned(), options })
            })
            .collect::<Result<_, _>>()?;
        Ok(Some(Self { each, target }))
    }

    pub fn target(&self) -> Target {
        self.target
    }

    /// Where the servers are, for messages.
    pub fn shown(&self) -> String {
        self.each.iter().map(|s| s.shown.as_str()).collect::<Vec<_>>().join(",")
    }
}

/// What a check of one server found.
#[derive(Debug, Clone, Copy)]
struct Seen {
    standby: bool,
    /// Seconds its replay trails what it has received (0 on a primary).
    replay_lag: f64,
    /// It streams WAL from a primary (a standby whose primary is gone does not).
    streaming: bool,
    /// A primary's timeline (0 on a standby). A promotion starts a new, higher one, so of two
    /// servers that both say they are the primary (a former primary that was paused, woke
    /// up and was not demoted yet) the higher timeline is the real one.
    timeline: i64,
}

impl Seen {
    async fn of(conn: &mut AnyConnection) -> Result<Self, sqlx::Error> {
        // On a primary the three are false, NULL and NULL. A standby's replay lag is 0 while
        // it has replayed all it received, else the age of the last commit it replayed.
        let (standby, replay_lag, streaming, timeline): (bool, Option<f64>, Option<bool>, Option<i64>) =
            sqlx::query_as(
                "SELECT pg_is_in_recovery(), \
                    CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0.0 \
                         ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8 END, \
                    (SELECT status = 'streaming' FROM pg_stat_wal_receiver), \
                    CASE WHEN pg_is_in_recovery() THEN 0 \
                         ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int::int8 END",
            )
            .fetch_one(conn)
            .await?;
        Ok(Self {
            standby,
            replay_lag: replay_lag.unwrap_or(0.0).max(0.0),
            streaming: streaming.unwrap_or(false),
            timeline: timeline.unwrap_or(0),
        })
    }

    fn fits(self, target: Target) -> bool {
        match target {
            Target::Any | Target::PreferStandby => true,
            Target::ReadWrite => !self.standby,
        }
    }
}

/// Keeps a pool pointed at the server of its URL that fits the target.
#[derive(Debug)]
pub struct Follower {
    servers: Servers,
    current: AtomicUsize,
    /// When the pool last moved, in nanoseconds after `origin` (0: never).
    moved: AtomicU64,
    origin: Instant,
    /// The last check found a server that fits.
    found: AtomicBool,
    /// For a follower of standbys: its standby is fresh enough to read from.
    fresh: AtomicBool,
    /// How far a standby's replay may trail for reads from it.
    staleness: Duration,
    /// When the standby was last seen streaming from a primary, in nanoseconds after `origin`.
    streamed: AtomicU64,
    /// The primary's follower, whose view a follower of standbys consults.
    primary: Option<Arc<Follower>>,
    wake: Notify,
    /// The highest primary timeline seen so far. A new connection to a primary on a lower one
    /// is refused: that server is a former primary that has not been demoted yet (a connect
    /// that began before it was paused ends when it wakes, after the pool moved on).
    timeline: AtomicI64,
}

impl Follower {
    /// Finds the server to use among `servers`, trying for at most `patience` (a cluster may be
    /// electing a primary as the process starts), then returns the follower pointed at it.
    pub async fn locate(
        servers: Servers,
        staleness: Duration,
        primary: Option<Arc<Follower>>,
        patience: Duration,
    ) -> Result<Arc<Self>, DbError> {
        let follower = Arc::new(Self::new(servers, staleness, primary));
        let deadline = Instant::now() + patience;
        loop {
            if let Some((at, _conn, seen)) = follower.search(0).await {
                follower.timeline.fetch_max(seen.timeline, Ordering::Relaxed);
                follower.current.store(at, Ordering::Relaxed);
                follower.judge(Some(seen));
                return Ok(follower);
            }
            if Instant::now() >= deadline {
                return Err(DbError::NoServer { servers: follower.servers.shown(), target: follower.servers.target });
            }
            tokio::time::sleep(CHECK_EVERY).await;
        }
    }

    fn new(servers: Servers, staleness: Duration, primary: Option<Arc<Follower>>) -> Self {
        Self {
            servers,
            current: AtomicUsize::new(0),
            moved: AtomicU64::new(0),
            origin: Instant::now(),
            found: AtomicBool::new(false),
            fresh: AtomicBool::new(false),
            staleness,
            streamed: AtomicU64::new(0),
            primary,
            wake: Notify::new(),
            timeline: AtomicI64::new(0),
        }
    }

    /// The options of the server the pool uses now.
    pub fn options(&self) -> AnyConnectOptions {
        self.servers.each[self.current.load(Ordering::Relaxed)].options.clone()
    }

    /// Where the pool connects now.
    pub fn current(&self) -> &str {
        &self.servers.each[self.current.load(Ordering::Relaxed)].shown
    }

    /// True while the last check found a server that fits.
    pub fn found(&self) -> bool {
        self.found.load(Ordering::Relaxed)
    }

    /// For a follower of standbys: true while reads from its server are fresh enough. A
    /// standby is while its replay trails what it received by at most the staleness bound and
    /// it streams from a primary, or stopped streaming less than the bound ago; while no
    /// primary can be found (a failover) it stays fresh on what it has, since under synchronous
    /// replication every acknowledged commit reached it. A server that is not a standby (it was
    /// promoted) is the primary, fresh by definition.
    pub fn fresh(&self) -> bool {
        self.fresh.load(Ordering::Relaxed)
    }

    fn judge(&self, seen: Option<Seen>) {
        if let Some(seen) = seen {
            self.timeline.fetch_max(seen.timeline, Ordering::Relaxed);
        }
        let now = self.origin.elapsed();
        if seen.is_some_and(|seen| seen.streaming || !seen.standby) {
            self.streamed.store(u64::try_from(now.as_nanos()).unwrap_or(u64::MAX).max(1), Ordering::Relaxed);
        }
        let streamed = self.streamed.load(Ordering::Relaxed);
        let streamed_lately = streamed > 0 && now.saturating_sub(Duration::from_nanos(streamed)) <= self.staleness;
        let fresh = seen.is_some_and(|seen| {
            let primary_lost = self.primary.as_ref().is_some_and(|p| !p.found());
            !seen.standby
                || (seen.replay_lag <= self.staleness.as_secs_f64()
                    && (seen.streaming || streamed_lately || primary_lost))
        });
        self.found.store(seen.is_some(), Ordering::Relaxed);
        let was = self.fresh.swap(fresh, Ordering::Relaxed);
        if self.servers.target == Target::PreferStandby && was != fresh {
            if fresh {
                tracing::info!(server = %self.current(), "reads go to the standby");
            } else {
                tracing::warn!(server = %self.current(), seen = ?seen, "the standby may trail by more than the bound: reads go to the primary");
            }
        }
    }

    /// Judges what a check saw; a standby that stopped streaming first has the primary's
    /// follower check its primary at once (the primary may just have died, which makes the
    /// standby's data the newest there is), so that reads do not move to a dead primary.
    async fn judge_seen(&self, seen: Seen) {
        if let Some(primary) = self.primary.as_ref().filter(|p| seen.standby && !seen.streaming && p.found()) {
            primary.wake.notify_one();
            tokio::time::sleep(PRIMARY_RECHECK).await;
        }
        self.judge(Some(seen));
    }

    /// A connection `age` old was opened after the pool last moved (else it may lead to the
    /// server the pool left, and is closed instead of used).
    pub fn opened_since_move(&self, age: Duration) -> bool {
        let moved = self.moved.load(Ordering::Relaxed);
        let opened = self.origin.elapsed().saturating_sub(age);
        moved == 0 || opened.as_nanos() >= u128::from(moved)
    }

    /// Checks a new connection of the pool (see [`Follower::admits`]); one refused has the
    /// follower look again.
    pub async fn admit(&self, conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
        if self.servers.target != Target::ReadWrite {
            return Ok(());
        }
        let seen = Seen::of(conn).await?;
        if self.admits(seen) {
            return Ok(());
        }
        self.wake.notify_one();
        let what = if seen.standby { "a standby" } else { "a former primary (on an older timeline)" };
        Err(sqlx::Error::Io(std::io::Error::other(format!("a new connection reached {what}; looking for the primary"))))
    }

    /// Whether a new connection to a server seen as `seen` may join the pool: its server must
    /// fit the target (a primary demoted since the pool moved does not) and, for the primary,
    /// be on the newest timeline seen (a former primary that woke from a pause still says it
    /// is the primary until Patroni demotes it, and would answer with data from before the
    /// failover).
    fn admits(&self, seen: Seen) -> bool {
        seen.fits(self.servers.target)
            && (self.servers.target != Target::ReadWrite || seen.timeline >= self.timeline.load(Ordering::Relaxed))
    }

    /// The first server from `start` on (in the URL's order, wrapping) that fits the target,
    /// with a connection to it; a follower of standbys takes a standby before any other. For
    /// the primary see [`Follower::search_primary`].
    async fn search(&self, start: usize) -> Option<(usize, AnyConnection, Seen)> {
        let n = self.servers.each.len();
        if self.servers.target == Target::ReadWrite {
            return self.search_primary(start).await;
        }
        let mut fallback = None;
        for at in (0..n).map(|i| (start + i) % n) {
            let Some((conn, seen)) = self.probe(at).await else { continue };
            match self.servers.target {
                Target::PreferStandby if !seen.standby => {
                    fallback.get_or_insert((at, conn, seen));
                }
                target if seen.fits(target) => return Some((at, conn, seen)),
                _ => {}
            }
        }
        fallback
    }

    /// The primary: every server is asked at once, and of those that say they are the primary
    /// the one on the highest timeline wins (another is a former primary that has not noticed
    /// yet). A server that does not answer (a paused former primary holds its connections
    /// without answering) holds the search up only until one said it is the primary and
    /// [`PRIMARY_GRACE`] more, not for the whole probe timeout.
    async fn search_primary(&self, start: usize) -> Option<(usize, AnyConnection, Seen)> {
        use futures::StreamExt as _;
        let n = self.servers.each.len();
        let mut probes: futures::stream::FuturesUnordered<_> =
            (0..n).map(|i| (start + i) % n).map(|at| async move { (at, self.probe(at).await) }).collect();
        let mut best: Option<(usize, AnyConnection, Seen)> = None;
        let grace = tokio::time::sleep(Duration::MAX);
        tokio::pin!(grace);
        let mut waiting = false;
        loop {
            let next = tokio::select! {
                next = probes.next() => next,
                () = &mut grace, if waiting => None,
            };
            let Some((at, answered)) = next else { break };
            let Some((conn, seen)) = answered else { continue };
            if seen.fits(Target::ReadWrite) && best.as_ref().is_none_or(|(_, _, b)| seen.timeline > b.timeline) {
                best = Some((at, conn, seen));
                if !waiting {
                    waiting = true;
                    grace.as_mut().reset(tokio::time::Instant::now() + PRIMARY_GRACE);
                }
            }
        }
        best
    }

    /// For the primary: whether another server says it is the primary on a higher timeline
    /// than `seen`'s (then the one the pool uses was demoted in all but its own view).
    async fn outranked(&self, at: usize, seen: Seen) -> bool {
        if self.servers.target != Target::ReadWrite {
            return false;
        }
        for other in (0..self.servers.each.len()).filter(|&other| other != at) {
            if let Some((_, theirs)) = self.probe(other).await
                && theirs.fits(Target::ReadWrite)
                && theirs.timeline > seen.timeline
            {
                return true;
            }
        }
        false
    }

    /// A connection to server `at` and what it is, or `None` if it does not answer in time.
    async fn probe(&self, at: usize) -> Option<(AnyConnection, Seen)> {
        let attempt = async {
            let mut conn = AnyConnection::connect_with(&self.servers.each[at].options).await?;
            let seen = Seen::of(&mut conn).await?;
            Ok::<_, sqlx::Error>((conn, seen))
        };
        match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
            Ok(Ok(found)) => Some(found),
            Ok(Err(e)) => {
                tracing::debug!(server = %self.servers.each[at].shown, error = %e, "database server does not answer");
                None
            }
            Err(_) => None,
        }
    }

    /// Checks the server once a second (and when a new connection found it unfit), and moves
    /// `pool` when another server fits better; returns when the pool closes.
    pub async fn follow(self: Arc<Self>, pool: AnyPool, name: String) {
        let closed = pool.close_event();
        tokio::pin!(closed);
        let mut watch: Option<AnyConnection> = None;
        loop {
            tokio::select! {
                _ = &mut closed => return,
                () = tokio::time::sleep(CHECK_EVERY) => {}
                () = self.wake.notified() => {}
            }
            let at = self.current.load(Ordering::Relaxed);
            if let Some(conn) = watch.as_mut() {
                match tokio::time::timeout(PROBE_TIMEOUT, Seen::of(conn)).await {
                    Ok(Ok(seen))
                        if seen.fits(self.servers.target)
                            && !self.prefers_another(seen)
                            && !self.outranked(at, seen).await =>
                    {
                        self.judge_seen(seen).await;
                        continue;
                    }
                    _ => watch = None,
                }
            }
            // The server we watch is gone or no longer fits (or we watch none yet): the
            // first that fits, from the current one on.
            match self.search(at).await {
                Some((found, conn, seen)) => {
                    // Before the pool moves, so that a connect still under way to the server
                    // it leaves is refused when it completes.
                    self.timeline.fetch_max(seen.timeline, Ordering::Relaxed);
                    if found != at {
                        self.current.store(found, Ordering::Relaxed);
                        pool.set_connect_options(self.servers.each[found].options.clone());
                        let now = self.origin.elapsed().as_nanos();
                        self.moved.store(u64::try_from(now).unwrap_or(u64::MAX).max(1), Ordering::Relaxed);
                        tracing::warn!(
                            database = %name,
                            from = %self.servers.each[at].shown,
                            to = %self.servers.each[found].shown,
                            standby = seen.standby,
                            "database server moved: new connections go to the server that fits now"
                        );
                        super::note_move();
                    }
                    self.judge_seen(seen).await;
                    watch = Some(conn);
                }
                None => {
                    if self.found() {
                        tracing::warn!(database = %name, servers = %self.servers.shown(), target = ?self.servers.target,
                            "no database server fits now; looking again each second");
                    }
                    self.judge(None);
                }
            }
        }
    }

    /// A follower of standbys that settled for a primary looks for a standby again.
    fn prefers_another(&self, seen: Seen) -> bool {
        self.servers.target == Target::PreferStandby && !seen.standby && self.servers.each.len() > 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(url: &str) -> (String, Target) {
        let servers = Servers::parse(url).unwrap().expect("several servers");
        (servers.shown(), servers.target())
    }

    #[test]
    fn a_url_of_one_server_without_a_target_is_left_to_sqlx() {
        assert!(Servers::parse("postgres://agora@db:5432/orders").unwrap().is_none());
        assert!(Servers::parse("sqlite:data/x.db").unwrap().is_none());
    }

    #[test]
    fn hosts_and_target_are_read_as_libpq_reads_them() {
        assert_eq!(
            shown("postgres://agora:pw@10.0.0.1:5432,10.0.0.2:5433/orders?target_session_attrs=read-write"),
            ("10.0.0.1:5432,10.0.0.2:5433".to_owned(), Target::ReadWrite)
        );
        assert_eq!(shown("postgresql://a@h1,h2/x"), ("h1,h2".to_owned(), Target::Any));
        assert_eq!(
            shown("postgres://a@h1:1?sslmode=disable&target_session_attrs=prefer-standby"),
            ("h1:1".to_owned(), Target::PreferStandby)
        );
    }

    #[test]
    fn each_server_keeps_the_credentials_database_and_other_parameters() {
        let servers =
            Servers::parse("postgres://agora:pw@h1:1,h2:2/orders?target_session_attrs=primary&application_name=x")
                .unwrap()
                .unwrap();
        assert_eq!(servers.each.len(), 2);
        assert_eq!(servers.target(), Target::ReadWrite);
    }

    #[test]
    fn unsupported_targets_and_empty_hosts_are_refused_with_the_reason() {
        let err = Servers::parse("postgres://a:secret@h1,h2/x?target_session_attrs=standby").unwrap_err().to_string();
        assert!(err.contains("use any, read-write or prefer-standby"), "{err}");
        assert!(!err.contains("secret"), "{err}");
        let err = Servers::parse("postgres://a@h1,,h2/x").unwrap_err().to_string();
        assert!(err.contains("empty host"), "{err}");
    }

    #[test]
    fn a_standby_fits_only_targets_that_admit_one() {
        let standby = Seen { standby: true, replay_lag: 0.0, streaming: true, timeline: 0 };
        let primary = Seen { standby: false, replay_lag: 0.0, streaming: false, timeline: 2 };
        assert!(!standby.fits(Target::ReadWrite));
        assert!(primary.fits(Target::ReadWrite));
        assert!(standby.fits(Target::PreferStandby) && primary.fits(Target::PreferStandby));
        assert!(standby.fits(Target::Any));
    }

    fn follower(primary: Option<Arc<Follower>>) -> Follower {
        let servers = Servers::parse("postgres://a@h1,h2/x?target_session_attrs=prefer-standby").unwrap().unwrap();
        Follower::new(servers, Duration::from_millis(50), primary)
    }

    #[test]
    fn a_standby_is_fresh_while_it_streams_within_the_bound_or_no_primary_is_found() {
        let primary = Arc::new(follower(None));
        primary.found.store(true, Ordering::Relaxed);
        let reads = follower(Some(primary.clone()));
        reads.judge(Some(Seen { standby: true, replay_lag: 0.02, streaming: true, timeline: 0 }));
        assert!(reads.fresh());
        reads.judge(Some(Seen { standby: true, replay_lag: 3.0, streaming: true, timeline: 0 }));
        assert!(!reads.fresh(), "replay 3 s behind is past the 50 ms bound");
        reads.judge(Some(Seen { standby: true, replay_lag: 0.0, streaming: false, timeline: 0 }));
        assert!(reads.fresh(), "it streamed less than the bound ago");
        std::thread::sleep(Duration::from_millis(60));
        reads.judge(Some(Seen { standby: true, replay_lag: 0.0, streaming: false, timeline: 0 }));
        assert!(!reads.fresh(), "a standby cut off from a live primary for longer than the bound may miss its commits");
        primary.found.store(false, Ordering::Relaxed);
        reads.judge(Some(Seen { standby: true, replay_lag: 0.0, streaming: false, timeline: 0 }));
        assert!(reads.fresh(), "while the primary fails over, the synchronous standby has every acknowledged commit");
        reads.judge(Some(Seen { standby: false, replay_lag: 0.0, streaming: false, timeline: 0 }));
        assert!(reads.fresh(), "a promoted standby is the primary");
        reads.judge(None);
        assert!(!reads.fresh() && !reads.found());
    }

    #[test]
    fn connections_opened_before_a_move_are_not_used_after_it() {
        let f = follower(None);
        assert!(f.opened_since_move(Duration::from_secs(3600)), "no move yet: every connection is good");
        std::thread::sleep(Duration::from_millis(5));
        f.moved.store(u64::try_from(f.origin.elapsed().as_nanos()).unwrap(), Ordering::Relaxed);
        assert!(!f.opened_since_move(Duration::from_millis(4)));
        std::thread::sleep(Duration::from_millis(2));
        assert!(f.opened_since_move(Duration::from_millis(1)));
    }

    #[test]
    fn a_former_primary_on_an_older_timeline_is_not_admitted_once_a_newer_one_was_seen() {
        let servers = Servers::parse("postgres://a@h1,h2/x?target_session_attrs=read-write").unwrap().unwrap();
        let f = Follower::new(servers, Duration::ZERO, None);
        let on = |timeline| Seen { standby: false, replay_lag: 0.0, streaming: false, timeline };
        assert!(f.admits(on(3)), "the first primary seen");
        f.judge(Some(on(4)));
        assert!(f.admits(on(4)));
        assert!(!f.admits(on(3)), "a primary on timeline 3 after 4 was seen has been failed over");
        assert!(!f.admits(Seen { standby: true, replay_lag: 0.0, streaming: true, timeline: 0 }));
        f.judge(Some(on(3)));
        assert!(!f.admits(on(3)), "seeing the older one again does not lower the bar");
        let reads = follower(None);
        reads.judge(Some(on(4)));
        assert!(reads.admits(on(3)), "only the primary's pool checks timelines");
    }
}
