//! `agora` with no arguments, as a newcomer runs it: it prints the URL, the admin account and
//! curl commands that work as printed; Ctrl-C stops it cleanly; a restart keeps the data.

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
    let mut child = Command::new(env!("CARGO_BIN_EXE_agora"))
        .env("AGORA_DATA_DIR", data)
        // Port 0 everywhere: the banner tells where the gateway really is.
        .env("AGORA_LISTEN", "127.0.0.1:0")
        .env("AGORA_USER_ADDR", "127.0.0.1:0")
        .env("AGORA_PRODUCT_ADDR", "127.0.0.1:0")
        .env("AGORA_ORDER_ADDR", "127.0.0.1:0")
        .env("AGORA_PAYMENT_ADDR", "127.0.0.1:0")
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
