//! `agora` with no arguments, as a newcomer runs it: it prints the URL, the admin account and
//! curl commands that work as printed; Ctrl-C stops it cleanly; a restart keeps the data; a
//! second one starts beside a first that holds the usual ports.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, ChildStdout, Command, Stdio},
    time::Duration,
};

use serde_json::Value;

pub(crate) struct Platform {
    child: Child,
    /// Kept open: the platform's stdout is not closed under it.
    _stdout: std::io::Lines<BufReader<ChildStdout>>,
    banner: String,
    pub(crate) url: String,
    pub(crate) admin: (String, String),
}

impl Drop for Platform {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

pub(crate) fn start(data: &Path) -> Platform {
    let mut command = Command::new(env!("CARGO_BIN_EXE_agora"));
    // Port 0 everywhere: the banner tells where each component really is.
    for service in ["USER", "PRODUCT", "ORDER", "PAYMENT"] {
        command.env(format!("AGORA_{service}_ADDR"), "127.0.0.1:0");
    }
    spawn(command, data)
}

/// `agora` on a free gateway port and the services' usual addresses (none given).
fn start_on_usual_ports(data: &Path) -> Platform {
    let mut command = Command::new(env!("CARGO_BIN_EXE_agora"));
    for service in ["USER", "PRODUCT", "ORDER", "PAYMENT"] {
        command.env_remove(format!("AGORA_{service}_ADDR"));
    }
    spawn(command, data)
}

fn spawn(mut command: Command, data: &Path) -> Platform {
    let mut child = command
        .env("AGORA_DATA_DIR", data)
        .env("AGORA_LISTEN", "127.0.0.1:0")
        .env_remove("AGORA_JWT_SECRET")
        .env_remove("AGORA_ADMIN_PASSWORD")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::options().create(true).append(true).open(data.join("agora.log")).unwrap())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let banner = read_banner(&mut stdout);
    let url = between(&banner, "REST gateway at ", " ").to_owned();
    let account = between(&banner, "Admin account: ", "\n");
    let (email, password) = account.split_once(" / ").unwrap();
    let password = password.split(' ').next().unwrap();
    Platform { child, _stdout: stdout, url, admin: (email.to_owned(), password.to_owned()), banner }
}

fn read_banner(lines: &mut std::io::Lines<BufReader<ChildStdout>>) -> String {
    let mut banner = String::new();
    while let Some(Ok(line)) = lines.next() {
        banner.push_str(&line);
        banner.push('\n');
        if line.starts_with("Ctrl-C stops it") {
            return banner;
        }
    }
    panic!("agora exited before printing its banner:\n{banner}");
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text.find(start).unwrap_or_else(|| panic!("{start:?} in {text}")) + start.len();
    let len = text[from..].find(end).unwrap();
    &text[from..from + len]
}

/// The banner's curl commands, run by a shell exactly as printed.
fn curl_commands(banner: &str) -> Vec<String> {
    let try_section = between(banner, "Try:\n", "\n\n");
    try_section.replace("\\\n", " ").lines().map(str::trim).map(str::to_owned).collect()
}

/// Runs `command` in a shell; on failure shows the platform's log from `data`.
fn sh(data: &Path, command: &str) -> Value {
    let output = Command::new("sh").args(["-c", command]).output().unwrap();
    if !output.status.success() {
        let log = std::fs::read_to_string(data.join("agora.log")).unwrap_or_default();
        panic!("{command}: {} {}\n{log}", output.status, String::from_utf8_lossy(&output.stdout));
    }
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{command}: {e}"))
}

pub(crate) fn interrupt_and_wait(platform: &mut Platform) -> std::process::ExitStatus {
    let pid = platform.child.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    for _ in 0..100 {
        if let Some(status) = platform.child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("agora did not stop within 10 s of Ctrl-C");
}

#[test]
fn the_one_command_platform_works_as_printed_and_keeps_its_data() {
    let data = tempfile::tempdir().unwrap();
    let mut first = start(data.path());
    assert!(first.url.starts_with("http://127.0.0.1:"), "{}", first.banner);

    let commands = curl_commands(&first.banner);
    assert_eq!(commands.len(), 3, "{}", first.banner);
    let catalog = sh(data.path(), &commands[0]);
    assert_eq!(catalog["products"].as_array().unwrap().len(), 5, "the demo catalog: {catalog}");
    let registered = sh(data.path(), &commands[1]);
    assert_eq!(registered["email"], "ada@example.com");
    let login = sh(data.path(), &commands[2]);
    assert_eq!(login["tokenType"], "Bearer");

    let admin = sh(
        data.path(),
        &format!(
            "curl -s -X POST {}/v1/auth/login -H 'content-type: application/json' -d '{{\"email\":\"{}\",\"password\":\"{}\"}}'",
            first.url, first.admin.0, first.admin.1
        ),
    );
    assert!(admin["accessToken"].is_string(), "the printed admin account logs in: {admin}");
    assert!(interrupt_and_wait(&mut first).success());

    // Same data directory: same admin, same users, no second demo catalog.
    let second = start(data.path());
    assert_eq!(second.admin, first.admin);
    let catalog = sh(data.path(), &format!("curl -s {}/v1/products", second.url));
    assert_eq!(catalog["products"].as_array().unwrap().len(), 5);
    let login = sh(data.path(), &curl_commands(&second.banner)[2].clone());
    assert!(login["accessToken"].is_string(), "the user registered before the restart logs in: {login}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_platform_starts_beside_one_holding_the_usual_ports_and_an_address_given_stays_strict() {
    let (first_data, second_data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // The first takes the usual service ports (or, if something else holds one, a free one).
    let first = start_on_usual_ports(first_data.path());
    let second = start_on_usual_ports(second_data.path());
    let services = |p: &Platform| between(&p.banner, "Services (gRPC): ", "\n").to_owned();
    let (held, moved) = (services(&first), services(&second));
    for (service, usual) in [
        ("user-service", agora_kit::defaults::USER_ADDR),
        ("product-service", agora_kit::defaults::PRODUCT_ADDR),
        ("order-service", agora_kit::defaults::ORDER_ADDR),
        ("payment-service", agora_kit::defaults::PAYMENT_ADDR),
    ] {
        let at = |listing: &str| between(listing, &format!("{service} "), ",").to_owned();
        assert_ne!(at(&format!("{moved},")), at(&format!("{held},")), "{service}: {held} / {moved}");
        assert_ne!(at(&format!("{moved},")), usual, "the second {service} took a port the first holds");
    }

    // The second serves an order from sign-up to PAID, through its own gateway and services.
    let rest = gateway::testing::RestClient::new(&second.url, &second.admin.0, &second.admin.1);
    rest.ready(30).await;
    let (_, token) = rest.signup("ada@example.com").await;
    let mug = rest.product("Mug", 12_00, 5).await;
    let order = rest.order(&token, "beside", serde_json::json!([{"productId": mug, "quantity": 1}])).await.expect(201);
    rest.settled(&token, order["id"].as_str().unwrap(), "ORDER_STATUS_PAID").await;

    // An address the user gives is kept to: taken, the start fails and says so.
    let taken = between(&format!("{held},"), "user-service ", ",").to_owned();
    let third_data = tempfile::tempdir().unwrap();
    let strict = Command::new(env!("CARGO_BIN_EXE_agora"))
        .env("AGORA_DATA_DIR", third_data.path())
        .env("AGORA_LISTEN", "127.0.0.1:0")
        .env("AGORA_USER_ADDR", &taken)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&strict.stderr);
    assert!(!strict.status.success(), "agora all started on a taken --user-addr {taken}");
    assert!(said.contains(&format!("user-service cannot listen on {taken}")), "{said}");
    drop((first, second));
}
