//! Smoke tests of the production set-up fixtures in tests/fixture (standby, PgBouncer,
//! Redis Sentinel, Redis Cluster), against the real servers they start:
//!
//!     cargo test --test main ha_fixtures::
//!
//! Each test starts its own servers (private dirs, free ports), so they run in parallel
//! with each other and with the other areas. No ELT_TEST_* variables are needed.

use std::collections::BTreeSet;

use crate::fixture::{
    Bouncer, PrivateCluster, RedisCluster, Sentinel, Standby, backend_pid, connect, role,
};

#[test]
fn standby_replays_the_primary_and_not_while_paused() {
    let s = Standby::start();
    s.create_db("shop");
    let mut primary = connect(&s.primary_url_for("shop"));
    let mut standby = connect(&s.url_for("shop"));

    let in_recovery: bool = standby
        .query_one("select pg_is_in_recovery()", &[])
        .unwrap()
        .get(0);
    assert!(in_recovery, "the standby is not in recovery");
    let err = standby
        .batch_execute("create table nope (id int)")
        .expect_err("the standby accepted a write");
    assert_eq!(
        err.code(),
        Some(&postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION),
        "{err}"
    );

    primary
        .batch_execute("create table t (id int primary key); insert into t values (1)")
        .unwrap();
    s.wait_caught_up();
    let n: i64 = standby
        .query_one("select count(*) from t", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 1);

    s.pause_replay();
    assert!(s.replay_paused());
    primary.batch_execute("insert into t values (2)").unwrap();
    // the standby received the WAL of the insert but does not apply it
    s.wait_received();
    let n: i64 = standby
        .query_one("select count(*) from t", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "the standby applied a row while replay was paused");

    s.resume_replay();
    s.wait_caught_up();
    let n: i64 = standby
        .query_one("select count(*) from t", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
}

#[test]
fn pgbouncer_spreads_one_clients_transactions_over_server_connections() {
    let pg = PrivateCluster::start();
    let b = Bouncer::start(pg.port);
    let pool = b.fill_pool("postgres");
    assert_eq!(pool.len(), b.pool_size);

    let mut c = connect(&b.url());
    let mut seen = BTreeSet::new();
    for _ in 0..8 {
        let mut tx = c.transaction().unwrap();
        let first = tx_backend_pid(&mut tx);
        // within one transaction the server connection stays the same
        assert_eq!(tx_backend_pid(&mut tx), first);
        tx.commit().unwrap();
        seen.insert(first);
    }
    assert!(
        seen.len() >= 2,
        "8 transactions of one client all ran on backend {seen:?}"
    );
    // outside transactions too (autocommit statements)
    let pids: BTreeSet<i32> = (0..8).map(|_| backend_pid(&mut c)).collect();
    assert!(pids.len() >= 2, "autocommit statements all ran on {pids:?}");
    assert!(seen.is_subset(&pool) && pids.is_subset(&pool));
}

fn tx_backend_pid(tx: &mut postgres::Transaction<'_>) -> i32 {
    for m in tx.simple_query("select pg_backend_pid()").unwrap() {
        if let postgres::SimpleQueryMessage::Row(r) = m {
            return r.get(0).unwrap().parse().unwrap();
        }
    }
    panic!("no row");
}

#[test]
fn sentinel_failover_moves_the_master_and_keeps_the_data() {
    let s = Sentinel::start_with(Some("s3cret"));
    assert_eq!(s.sentinel_addrs().split(',').count(), 3);
    let old = s.master_addr();
    assert_eq!(old, s.data[0].addr());

    let _: () = redis::cmd("SET")
        .arg("elt:before")
        .arg("kept")
        .query(&mut s.master())
        .unwrap();
    // the data nodes want the password
    let anon = redis::Client::open(format!("redis://{old}/0"))
        .unwrap()
        .get_connection()
        .and_then(|mut c| {
            redis::cmd("GET")
                .arg("elt:before")
                .query::<Option<String>>(&mut c)
        });
    assert!(anon.is_err(), "a data node answered without the password");

    let new = s.failover();
    assert_ne!(new, old);
    assert_eq!(s.master_addr(), new);
    let mut m = s.master();
    assert_eq!(role(&mut m).unwrap().0, "master");
    let v: Option<String> = redis::cmd("GET").arg("elt:before").query(&mut m).unwrap();
    assert_eq!(v.as_deref(), Some("kept"));
    // the new master takes writes and the old one, now a replica, gets them
    let _: () = redis::cmd("SET")
        .arg("elt:after")
        .arg("1")
        .query(&mut m)
        .unwrap();
    assert!(s.sync_replicas());
    let mut old_con = s.data[0].connection().unwrap();
    let (r, _, _) = role(&mut old_con).unwrap();
    assert_eq!(r, "slave");
    let v: Option<String> = redis::cmd("GET")
        .arg("elt:after")
        .query(&mut old_con)
        .unwrap();
    assert_eq!(v.as_deref(), Some("1"));
}

#[test]
fn redis_cluster_spreads_hash_tags_over_the_masters() {
    let rc = RedisCluster::start();
    assert_eq!(rc.seeds().split(',').count(), 3);
    let keys = ["{a}x", "{b}x", "{c}x"];
    let mut nodes = BTreeSet::new();
    for k in keys {
        rc.set(k, k.as_bytes());
        nodes.insert(rc.node_for_key(k).port);
    }
    assert_eq!(nodes.len(), 3, "{keys:?} did not land on 3 nodes");
    for k in keys {
        assert_eq!(rc.get(k).as_deref(), Some(k.as_bytes()));
    }
    assert_eq!(rc.keys("{?}x"), keys);

    // a node that does not serve the key redirects
    let other = rc
        .nodes
        .iter()
        .find(|n| n.port != rc.node_for_key("{a}x").port)
        .unwrap();
    let err = redis::cmd("GET")
        .arg("{a}x")
        .query::<Option<String>>(&mut other.connection().unwrap())
        .expect_err("a node that does not own the slot answered");
    assert!(err.redirect_node().is_some(), "not a MOVED: {err}");

    // two keys of one hash tag share a slot: MGET works; across slots it does not
    rc.set("{t}1", b"one");
    rc.set("{t}2", b"two");
    assert_eq!(rc.slot_of("{t}1"), rc.slot_of("{t}2"));
    let both: Vec<Option<String>> = redis::cmd("MGET")
        .arg("{t}1")
        .arg("{t}2")
        .query(&mut rc.connection_for_key("{t}1"))
        .unwrap();
    assert_eq!(both, [Some("one".to_string()), Some("two".to_string())]);
    let cross = redis::cmd("MGET")
        .arg("{a}x")
        .arg("{b}x")
        .query::<Vec<Option<String>>>(&mut rc.connection_for_key("{a}x"));
    assert!(cross.is_err(), "MGET across slots worked");
}
