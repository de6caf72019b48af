//! skiff-runtime against a real store: the informer's copy follows the
//! store through creates, updates and deletes (and across the loss of the
//! member it watches), leader election hands over on resign and on a dead
//! leader's lease expiring, and a deposed leader's fenced writes fail.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use skiff_client::{Client, ClientOptions};
use skiff_runtime::{Election, Expect, Informer, Notice, Registry, RegistryError, Write};
use skiff_tests::Cluster;
use skiff_tests::wait::wait_for;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

async fn client(cluster: &Cluster) -> Client {
    let endpoints: Vec<String> = cluster.endpoints().split(',').map(str::to_string).collect();
    Client::connect(&endpoints, ClientOptions::default())
        .await
        .unwrap()
}

fn object(name: &str, n: i64) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "n": n})
}

/// What the handler heard, as (kind, key, n) with n the object's `n`.
type Heard = Arc<Mutex<Vec<(&'static str, String, i64)>>>;

#[tokio::test]
async fn runtime_informer_follows_the_store() {
    let mut cluster = Cluster::start(3).await;
    let registry = Registry::new(client(&cluster).await);
    registry
        .create("/registry/t/a", &object("a", 1))
        .await
        .unwrap();
    registry
        .create("/registry/t/b", &object("b", 1))
        .await
        .unwrap();
    registry
        .create("/registry/u/x", &object("x", 1))
        .await
        .unwrap();

    let mut informer = Informer::new(registry.clone(), "/registry/t/", Duration::from_secs(3600));
    let heard: Heard = Arc::default();
    let sink = heard.clone();
    informer.on_change(move |notice| {
        let kind = match notice {
            Notice::Upsert { old: None, .. } => "added",
            Notice::Upsert { .. } => "updated",
            Notice::Delete { .. } => "deleted",
            Notice::Resync { .. } => "resync",
        };
        let n = notice.object()["n"].as_i64().unwrap_or(-1);
        sink.lock()
            .unwrap()
            .push((kind, notice.key().to_string(), n));
    });
    let cache = informer.cache();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(informer.run(cancel.clone()));
    tokio::time::timeout(WAIT, cache.wait_synced())
        .await
        .unwrap();
    assert_eq!(cache.len(), 2, "only the prefix is listed");
    assert_eq!(cache.get("/registry/t/a").unwrap()["n"], 1);
    assert!(cache.revision() > 0);

    let a = registry.get("/registry/t/a").await.unwrap();
    registry
        .update("/registry/t/a", &object("a", 2), a.mod_revision)
        .await
        .unwrap();
    let b = registry.get("/registry/t/b").await.unwrap();
    registry
        .delete("/registry/t/b", b.mod_revision)
        .await
        .unwrap();
    let c = registry
        .create("/registry/t/c", &object("c", 1))
        .await
        .unwrap();
    wait_for("the copy to follow", WAIT, async || {
        cache.get("/registry/t/c").is_some() && cache.get("/registry/t/b").is_none()
    })
    .await;
    assert_eq!(cache.get("/registry/t/a").unwrap()["n"], 2);
    assert!(cache.revision() >= c.mod_revision);
    assert_eq!(
        *heard.lock().unwrap(),
        vec![
            ("added", "/registry/t/a".to_string(), 1),
            ("added", "/registry/t/b".to_string(), 1),
            ("updated", "/registry/t/a".to_string(), 2),
            ("deleted", "/registry/t/b".to_string(), 1),
            ("added", "/registry/t/c".to_string(), 1),
        ]
    );

    // Every member dies in turn; the informer resumes its watch on the
    // others and misses nothing written meanwhile.
    for i in 0..3 {
        cluster.kill(i).await;
        let name = format!("/registry/t/k{i}");
        wait_for("a write with a member down", WAIT, async || match registry
            .create(&name, &object("k", i as i64))
            .await
        {
            Ok(_) | Err(RegistryError::AlreadyExists) => Ok(()),
            Err(e) => Err(e),
        })
        .await;
        cluster.restart(i).await;
    }
    wait_for("the writes made during failures", WAIT, async || {
        (0..3).all(|i| cache.get(&format!("/registry/t/k{i}")).is_some())
    })
    .await;
    let added = heard
        .lock()
        .unwrap()
        .iter()
        .filter(|(kind, key, _)| *kind == "added" && key.starts_with("/registry/t/k"))
        .count();
    assert_eq!(
        added,
        3,
        "each write heard once: {:?}",
        heard.lock().unwrap()
    );
    cancel.cancel();
    task.await.unwrap();
}

/// `write_all` writes every object or none: one stale expectation and
/// nothing of the transaction is stored.
#[tokio::test]
async fn runtime_write_all_is_all_or_nothing() {
    let cluster = Cluster::start(1).await;
    let registry = Registry::new(client(&cluster).await);
    let a = registry
        .create("/registry/t/a", &object("a", 1))
        .await
        .unwrap();
    let write = |name: &str, n: i64, expect: Expect| Write {
        key: format!("/registry/t/{name}"),
        value: object(name, n),
        expect,
    };
    // b is absent as expected, but a has moved on from revision a - 1.
    let stale = [
        write("a", 2, Expect::Revision(a.mod_revision - 1)),
        write("b", 1, Expect::Absent),
    ];
    assert_eq!(registry.write_all(&stale).await, Ok(None));
    assert_eq!(registry.get("/registry/t/a").await.unwrap().value["n"], 1);
    assert_eq!(
        registry.get("/registry/t/b").await,
        Err(RegistryError::NotFound)
    );
    // a is present where absence is expected.
    let present = [write("a", 2, Expect::Absent), write("b", 1, Expect::Absent)];
    assert_eq!(registry.write_all(&present).await, Ok(None));
    assert_eq!(
        registry.get("/registry/t/b").await,
        Err(RegistryError::NotFound)
    );
    // Both expectations hold: both are written at one revision.
    let current = [
        write("a", 2, Expect::Revision(a.mod_revision)),
        write("b", 1, Expect::Absent),
    ];
    let revision = registry
        .write_all(&current)
        .await
        .unwrap()
        .expect("written");
    for (name, n) in [("a", 2), ("b", 1)] {
        let stored = registry.get(&format!("/registry/t/{name}")).await.unwrap();
        assert_eq!(stored.value["n"], n);
        assert_eq!(stored.mod_revision, revision);
    }
    // More than a transaction holds is refused before it is sent.
    let many: Vec<Write> = (0..=skiff_runtime::registry::MAX_WRITES_AT_ONCE)
        .map(|i| write(&format!("m{i}"), 1, Expect::Absent))
        .collect();
    assert!(matches!(
        registry.write_all(&many).await,
        Err(RegistryError::Invalid(_))
    ));
    assert_eq!(
        registry.get("/registry/t/m0").await,
        Err(RegistryError::NotFound)
    );
}

#[tokio::test]
async fn runtime_election_hands_over_and_fences_the_old_leader() {
    let cluster = Cluster::start(3).await;
    let ttl = Duration::from_secs(2);
    let key = "/skiff/leader/controllers";
    let first = Election::new(client(&cluster).await, key, "first", ttl);
    let second = Election::new(client(&cluster).await, key, "second", ttl);
    let third = Election::new(client(&cluster).await, key, "third", ttl);
    let cancel = CancellationToken::new();

    let leading = first.campaign(&cancel).await.expect("first leads");
    assert_eq!(second.leader().await.unwrap().as_deref(), Some("first"));
    let registry = Registry::new(client(&cluster).await);
    let fenced = registry.fenced(leading.fence.clone());
    fenced
        .create("/registry/t/one", &object("one", 1))
        .await
        .unwrap();

    // The second waits while the first leads, and takes over at once when
    // the first resigns.
    let mut waiting = tokio::spawn({
        let cancel = cancel.clone();
        async move { second.campaign(&cancel).await }
    });
    let still_waiting = tokio::time::timeout(Duration::from_millis(1500), &mut waiting).await;
    assert!(still_waiting.is_err(), "two leaders at once");
    let resigned_at = Instant::now();
    leading.resign().await;
    let second_leads = tokio::time::timeout(WAIT, waiting)
        .await
        .unwrap()
        .unwrap()
        .expect("second leads");
    let hand_over = resigned_at.elapsed();
    assert!(
        hand_over < ttl,
        "a resign hands over without waiting out the TTL: {hand_over:?}"
    );
    assert_eq!(third.leader().await.unwrap().as_deref(), Some("second"));

    // The first's fenced writes now fail, and write nothing.
    let one = registry.get("/registry/t/one").await.unwrap();
    assert_eq!(
        fenced
            .update("/registry/t/one", &object("one", 2), one.mod_revision)
            .await,
        Err(RegistryError::Fenced {
            key: key.to_string()
        })
    );
    assert!(matches!(
        fenced.create("/registry/t/two", &object("two", 1)).await,
        Err(RegistryError::Fenced { .. })
    ));
    assert!(matches!(
        fenced
            .write_all(&[Write {
                key: "/registry/t/two".into(),
                value: object("two", 1),
                expect: Expect::Absent,
            }])
            .await,
        Err(RegistryError::Fenced { .. })
    ));
    assert_eq!(registry.get("/registry/t/one").await.unwrap().value["n"], 1);
    assert_eq!(
        registry.get("/registry/t/two").await,
        Err(RegistryError::NotFound)
    );
    // The second's fence holds.
    registry
        .fenced(second_leads.fence.clone())
        .update("/registry/t/one", &object("one", 3), one.mod_revision)
        .await
        .unwrap();

    // The second dies without resigning: its lease is no longer renewed,
    // and the third leads once the lease has expired, not before.
    let lost = second_leads.lost();
    let died_at = Instant::now();
    drop(second_leads);
    assert!(lost.is_cancelled(), "a dropped leadership is lost");
    let third_leads = tokio::time::timeout(WAIT, third.campaign(&cancel))
        .await
        .unwrap()
        .expect("third leads");
    let took = died_at.elapsed();
    assert!(
        took >= ttl / 2,
        "took over before the lease could expire: {took:?}"
    );
    assert!(
        took < ttl * 4,
        "took over within the lease TTL and a margin: {took:?}"
    );
    assert!(!third_leads.lost().is_cancelled());
    third_leads.resign().await;
}
