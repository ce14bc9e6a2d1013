//! `agora reconcile` on a real platform (`agora all` on SQLite): after orders are paid it
//! finds every promise kept; after the books are tampered with, it finds each broken one,
//! names it, and exits non-zero.

use std::{path::Path, process::Command};

use gateway::testing::RestClient;
use serde_json::{Value, json};
use sqlx::{Connection as _, SqliteConnection};

use crate::all;

/// `agora reconcile` on `data`'s databases with `extra` flags.
fn agora_reconcile(data: &Path, extra: &[&str]) -> std::process::Output {
    let db = |name: &str| format!("sqlite:{}", data.join(name).display());
    Command::new(env!("CARGO_BIN_EXE_agora"))
        .arg("reconcile")
        .args(["--order-db", &db("order.db"), "--payment-db", &db("payment.db")])
        .args(["--product-db", &db("product.db"), "--user-db", &db("user.db")])
        .args(extra)
        .env_remove("AGORA_KAFKA_BROKERS")
        .output()
        .unwrap()
}

/// Its verdict with nothing left to wait for: (exit success, the JSON report).
fn reconcile(data: &Path, extra: &[&str]) -> (bool, Value) {
    let output = agora_reconcile(data, &[extra, &["--settle-secs", "0", "--json"]].concat());
    let report = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not a JSON report ({e}): {}", String::from_utf8_lossy(&output.stderr)));
    (output.status.success(), report)
}

async fn sql(data: &Path, db: &str, statement: &str) {
    let mut conn = SqliteConnection::connect(&format!("sqlite:{}", data.join(db).display())).await.unwrap();
    let done = sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&mut conn).await.unwrap();
    assert_eq!(done.rows_affected(), 1, "{statement}");
}

#[tokio::test]
async fn reconcile_finds_every_promise_kept_then_each_one_broken() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let mut platform = all::start(data);
    let rest = RestClient::new(&platform.url, &platform.admin.0, &platform.admin.1);
    let product = rest.product("Reconciled mug", 4_00, 100).await;
    let stock_file = data.join("stock-before.json");
    let saved = agora_reconcile(data, &["--save-stock", stock_file.to_str().unwrap()]);
    assert!(saved.status.success(), "--save-stock failed: {}", String::from_utf8_lossy(&saved.stderr));

    let (_, ada) = rest.signup("ada@reconcile.test").await;
    let mut accepted = Vec::new();
    for key in ["one", "two", "three"] {
        let order = rest.order(&ada, key, json!([{"productId": product, "quantity": 2}])).await.expect(201);
        let id = order["id"].as_str().unwrap().to_owned();
        rest.settled(&ada, &id, "ORDER_STATUS_PAID").await;
        accepted.push(id);
    }
    let accepted_file = data.join("accepted.txt");
    std::fs::write(&accepted_file, accepted.join("\n")).unwrap();
    let checks = ["--accepted", accepted_file.to_str().unwrap(), "--stock-before", stock_file.to_str().unwrap()];
    // The consumers commit their effects just after the order shows PAID: wait for that.
    let mut kept = reconcile(data, &checks);
    for _ in 0..50 {
        if kept.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        kept = reconcile(data, &checks);
    }
    let (ok, report) = kept;
    assert!(ok, "a clean run must reconcile: {report:#}");
    assert!(report["problems"].as_array().unwrap().is_empty(), "{report:#}");
    assert_eq!((report["orders"].as_u64(), report["paid"].as_u64()), (Some(3), Some(3)), "{report:#}");
    assert!(report["products_checked"].as_u64().unwrap() > 0, "{report:#}");
    assert!(all::interrupt_and_wait(&mut platform).success());

    // Now break each promise once.
    let [charged_nothing, charged_twice, pending] = [&accepted[0], &accepted[1], &accepted[2]];
    sql(data, "payment.db", &format!("DELETE FROM payments WHERE order_id = '{charged_nothing}'")).await;
    sql(
        data,
        "payment.db",
        &format!("UPDATE wallet_entries SET amount_minor = 2 * amount_minor WHERE order_id = '{charged_twice}'"),
    )
    .await;
    sql(data, "order.db", &format!("UPDATE orders SET status = 'PENDING_PAYMENT' WHERE id = '{pending}'")).await;
    sql(data, "product.db", &format!("UPDATE products SET stock = stock - 1 WHERE id = '{product}'")).await;
    sql(data, "order.db", "INSERT INTO outbox (event_id, topic, partition_key, payload, created_at) VALUES ('e-1', 'agora.orders.v1', 'k', x'00', 0)").await;
    std::fs::write(&accepted_file, format!("{}\nnever-stored", accepted.join("\n"))).unwrap();

    let (ok, report) = reconcile(data, &checks);
    assert!(!ok, "tampered books must not reconcile: {report:#}");
    let figure = |name: &str| report[name].as_u64().unwrap_or_else(|| panic!("no {name} in {report:#}"));
    assert_eq!(figure("lost"), 1, "{report:#}");
    assert_eq!(figure("unsettled"), 1, "{report:#}");
    assert_eq!(figure("double_charges"), 1, "{report:#}");
    assert_eq!(figure("paid_not_charged"), 1, "{report:#}");
    assert_eq!(figure("wallet_mismatches"), 1, "the doubled debit left the balance off its ledger: {report:#}");
    assert_eq!(figure("unpublished_events"), 1, "{report:#}");
    // The pending order's units are no longer PAID ones, and the stock lost a unit.
    assert!(figure("stock_mismatches") >= 2, "{report:#}");
    let problems = report["problems"].to_string();
    for id in [charged_nothing, charged_twice, pending, &product, &"never-stored".to_owned()] {
        assert!(problems.contains(id.as_str()), "no problem names {id}: {problems}");
    }
}
