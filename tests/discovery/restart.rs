//! A Consul agent restart under load: calls keep flowing on the last known instances, and the
//! instances register again with the new agent (a `-dev` agent forgets everything). The
//! agent is the test's own, on fixed ports, so it comes back where the instances expect it.

use std::time::Duration;

use agora_discovery::Consul;
use agora_kit::testing::{PrivateInstance, consul_addr, eventually};

use crate::{SteadyCalls, two_instances, until_instances, until_status, who_answers};

#[tokio::test]
async fn an_agent_restart_keeps_calls_flowing_and_the_instances_register_again() {
    // The agent is private, but it runs only where the suite has Consul.
    let Some(_) = consul_addr() else { return };
    let agent = PrivateInstance::consul("restart");
    let consul = Consul::new(&agent.addr(), None).unwrap();
    let (service, a, b, balanced) = two_instances(&consul).await;

    // Steady calls for the whole restart.
    let calls = SteadyCalls::start(&balanced);

    agent.script("stop");
    let during = calls.answered();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(calls.answered() > during + 20, "calls stopped while the agent was down");
    agent.script("start");

    // The new agent knows nothing; each instance's keeper registers it again.
    until_status(&consul, &service, &a.id, Some("passing")).await;
    until_status(&consul, &service, &b.id, Some("passing")).await;
    until_instances(&balanced, &[&a.id, &b.id]).await;
    eventually(10, "both instances to answer after the restart", || async {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..20 {
            seen.insert(who_answers(&balanced).await.ok()?);
        }
        (seen.len() == 2).then_some(())
    })
    .await;

    let (ok, failed) = calls.stop().await;
    eprintln!("{ok} calls answered during the restart, {failed} failed");
    assert_eq!(failed, 0);
    a.served.stop().await;
    b.served.stop().await;
}
