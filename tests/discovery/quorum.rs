//! A Consul cluster of three servers losing its leader under load: calls keep flowing, the
//! instances stay registered and passing (the catalog is in Raft on the other two servers),
//! and an instance that starts after the election registers without anyone's help. The
//! processes talk to the cluster's client agent, as they would to the agent on their machine.

use std::time::{Duration, Instant};

use agora_discovery::Consul;
use agora_kit::testing::{PrivateInstance, consul_addr};

use crate::{ProductInstance, SteadyCalls, two_instances, until_instances, until_status};

#[tokio::test]
async fn losing_the_leader_server_keeps_calls_flowing_and_every_registration() {
    // The cluster is private, but it runs only where the suite has Consul.
    let Some(_) = consul_addr() else { return };
    let cluster = PrivateInstance::consul_cluster("quorum");
    let consul = Consul::new(&cluster.output(&["addr"]), None).unwrap();
    let (service, a, b, balanced) = two_instances(&consul).await;

    let calls = SteadyCalls::start(&balanced);

    let leader = cluster.output(&["leader"]);
    cluster.output(&["kill", &leader]);
    let killed = Instant::now();
    // A catalog read answers again once the other two servers have elected a leader.
    let mut elected = None;
    while elected.is_none() {
        assert!(killed.elapsed() < Duration::from_secs(30), "no new leader within 30 s");
        if consul.passing(&service, 0, Duration::ZERO).await.is_ok() {
            elected = Some(killed.elapsed());
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let new_leader = cluster.output(&["leader"]);
    assert_ne!(new_leader, leader, "another server leads");
    eprintln!("server {leader} killed: server {new_leader} leads, the catalog answered again after {elected:?}");
    until_status(&consul, &service, &a.id, Some("passing")).await;
    until_status(&consul, &service, &b.id, Some("passing")).await;

    // Registering works again, with nobody's help.
    let c = ProductInstance::start(&consul, &service, "C").await;
    until_instances(&balanced, &[&a.id, &b.id, &c.id]).await;
    cluster.output(&["start-member", &leader]);

    let (ok, failed) = calls.stop().await;
    eprintln!("{ok} calls answered while the leader was lost, {failed} failed");
    assert!(ok > 20, "calls flowed: {ok}");
    assert_eq!(failed, 0);
    for instance in [a, b, c] {
        instance.served.stop().await;
    }
}
