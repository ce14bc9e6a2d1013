//! A Consul agent restart under load: calls keep flowing on the last known instances, and the
//! instances register again with the new agent (a `-dev` agent forgets everything).

use std::{
    path::Path,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use agora_discovery::{Consul, Resolver};
use agora_kit::testing::{consul_addr, eventually};

use crate::{ProductInstance, unique_service, until_instances, until_status, who_answers};

/// A Consul agent of this test's own on fixed free ports, so that it comes back where the
/// instances and the watch expect it.
struct PrivateAgent {
    env: Vec<(&'static str, String)>,
}

impl PrivateAgent {
    fn start() -> Self {
        let env = vec![
            ("AGORA_CONSUL_INSTANCE", format!("restart-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])),
            ("AGORA_CONSUL_HTTP_PORT", free_port().to_string()),
            ("AGORA_CONSUL_SERVER_PORT", free_port().to_string()),
            ("AGORA_CONSUL_SERF_LAN_PORT", free_port().to_string()),
            ("AGORA_CONSUL_SERF_WAN_PORT", free_port().to_string()),
            ("AGORA_CONSUL_DNS_PORT", "-1".to_owned()),
            ("AGORA_CONSUL_GRPC_PORT", "-1".to_owned()),
        ];
        let agent = Self { env };
        agent.script("start");
        agent
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.env[1].1)
    }

    fn script(&self, command: &str) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/consul.sh");
        let status = Command::new("bash").arg(script).arg(command).envs(self.env.clone()).status().unwrap();
        assert!(status.success(), "consul.sh {command} failed");
    }
}

impl Drop for PrivateAgent {
    fn drop(&mut self) {
        self.script("reset");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn an_agent_restart_keeps_calls_flowing_and_the_instances_register_again() {
    // The agent is private, but it runs only where the suite has Consul.
    let Some(_) = consul_addr() else { return };
    let agent = PrivateAgent::start();
    let consul = Consul::new(&agent.addr(), None).unwrap();
    let service = unique_service();
    let a = ProductInstance::start(&consul, &service, "A").await;
    let b = ProductInstance::start(&consul, &service, "B").await;
    let balanced = Resolver::with_consul(consul.clone()).channel(&format!("consul://{service}")).unwrap();
    until_instances(&balanced, &[&a.id, &b.id]).await;

    // Steady calls for the whole restart.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = tokio::spawn({
        let (balanced, stop, ok, failed) = (balanced.clone(), stop.clone(), ok.clone(), failed.clone());
        async move {
            while !stop.load(Ordering::Relaxed) {
                match who_answers(&balanced).await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(status) => {
                        eprintln!("failed call: {status:?}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });

    agent.script("stop");
    let during = ok.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(ok.load(Ordering::Relaxed) > during + 20, "calls stopped while the agent was down");
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

    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("{ok} calls answered during the restart, {failed} failed");
    assert_eq!(failed, 0);
    a.served.stop().await;
    b.served.stop().await;
}
