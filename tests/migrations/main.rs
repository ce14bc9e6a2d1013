//! A migration, once released, never changes: sqlx refuses to start on a database whose
//! applied migration's checksum differs from the binary's. These are the checksums every
//! service's migrations had when they were applied, on each backend (SQLite's derived from the
//! PostgreSQL DDL, see `agora_kit::db::Migrations`); a change to a released migration fails
//! here. A new migration is a new file and a new row.

use agora_kit::db::{Backend, Migrations};

/// (service, version, backend, SHA-384 of the SQL as applied).
const APPLIED: &[(&str, i64, Backend, &str)] = &[
    (
        "order",
        1,
        Backend::Postgres,
        "52a486495e88d309c91f56dfe1e52b1cbc996e5c594978ff7784e057fe098c879175e24555a0f3b7974d633aa5be434b",
    ),
    (
        "order",
        1,
        Backend::Sqlite,
        "d2ae3730dd64fa98a6690db61dc8e0a4170da05a1214b20b6693bac138c8699ea0dad93b736b189ad9bf4a624b0ba2ca",
    ),
    (
        "payment",
        1,
        Backend::Postgres,
        "f37bbebbd29898a7f787312f5a05d424c23cdd800b6c3756ef34c18de20f8883ba368ff10a9fdccd5f214dc8baa28f80",
    ),
    (
        "payment",
        1,
        Backend::Sqlite,
        "8a027a6a8cd62a9fc7fb7a4cf91ee06b5ef977c4c345a0e3e04fac6094f2bdce9acfd18029de44a94a54c867e56805dc",
    ),
    (
        "payment",
        2,
        Backend::Postgres,
        "de955544245b434db29aaaa399c17dd4704bb88aff9ffb0fafa93707d595b33ba679a88e355c33d3e1a2098605c8990e",
    ),
    (
        "payment",
        2,
        Backend::Sqlite,
        "f78c7ac3d717fa99f9f46b26051800e149165173b85e243035e10b5780a50c0d71a2aea893ad50de5fc1331f65a16c36",
    ),
    (
        "product",
        1,
        Backend::Postgres,
        "0e80aebba5e6c4a7b8ddcb2e7c1122b49b710c28e7baa4d56f07c81caec0e462dffef312d58f597931c3220512b6be27",
    ),
    (
        "product",
        1,
        Backend::Sqlite,
        "e97ab7d690228138317784f17c399445d3244b9d23d16a3efae69fb01d25219ee37dba9a1c7d3d2a386c03a9f4a634db",
    ),
    (
        "user",
        1,
        Backend::Postgres,
        "93ec1ce78b1546f93013b8f0ca0879adfa16df272d70eaa61a6354fcda3afc183e67ff5e54524bc274aa95500cb64d43",
    ),
    (
        "user",
        1,
        Backend::Sqlite,
        "29daae73037a6e7d017dc847fb4e72e9f31a2a92dae5171a11605fc9b1e927b0404dd068313360a44e85a6d129c84a5c",
    ),
];

fn migrations(service: &str) -> Migrations {
    match service {
        "order" => order_service::store::migrations(),
        "payment" => payment_service::store::migrations(),
        "product" => product_service::store::migrations(),
        "user" => user_service::store::migrations(),
        other => panic!("no service {other}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn released_migrations_keep_their_checksums_on_both_backends() {
    let mut seen = Vec::new();
    for service in ["order", "payment", "product", "user"] {
        for backend in [Backend::Postgres, Backend::Sqlite] {
            let migrator = migrations(service).for_backend(backend).await.unwrap();
            for migration in migrator.iter() {
                let checksum = hex(&migration.checksum);
                let recorded =
                    APPLIED.iter().find(|(s, v, b, _)| (*s, *v, *b) == (service, migration.version, backend));
                match recorded {
                    Some((.., applied)) => assert_eq!(
                        &checksum, applied,
                        "{service}-service migration {} on {backend:?} changed after release: add a new migration instead",
                        migration.version
                    ),
                    None => panic!(
                        "{service}-service migration {} on {backend:?} is new: record it here with checksum {checksum}",
                        migration.version
                    ),
                }
                seen.push((service, migration.version, backend));
            }
        }
    }
    assert_eq!(seen.len(), APPLIED.len(), "a released migration is gone: {seen:?}");
}
