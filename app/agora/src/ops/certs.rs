//! `agora certs`: a deployment's development CA and a certificate for each role, for mutual
//! TLS between them (`make up` runs it; run it again to renew every certificate in place: the
//! roles read the files again without a restart).

use std::{
    io::Write as _,
    path::Path,
    time::{Duration, SystemTime},
};

use agora_kit::tls::{Identity, issue::Ca};

use crate::cli::CertsArgs;

/// Creates the CA in `--dir` unless it is there, then (re)issues every role's certificate.
pub fn run(args: &CertsArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", args.dir.display()))?;
    let (ca_cert, ca_key) = (args.dir.join("ca.pem"), args.dir.join("ca-key.pem"));
    let ca = if ca_cert.exists() {
        let read = |path: &Path| std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
        Ca::from_pem(&read(&ca_cert)?, &read(&ca_key)?).map_err(|e| anyhow::anyhow!("{}: {e}", ca_cert.display()))?
    } else {
        let ca =
            Ca::new(&format!("Agora development CA ({})", args.trust_domain), Duration::from_secs(10 * 365 * 86_400))?;
        write(&ca_key, &ca.key_pem(), true)?;
        write(&ca_cert, ca.cert_pem(), false)?;
        println!("created the CA: {}", ca_cert.display());
        ca
    };
    let now = SystemTime::now();
    let until = now + Duration::from_secs(args.days * 86_400);
    for role in &args.roles {
        let identity = Identity::parse(&format!("spiffe://{}/{role}", args.trust_domain))
            .ok_or_else(|| anyhow::anyhow!("{role:?} cannot name a role (lowercase letters, digits, '-', '.', '_')"))?;
        let issued = ca.issue(&identity, &[], now - Duration::from_secs(60), until)?;
        write_pair(&args.dir, role, &issued)?;
        println!("issued {identity} for {} days: {}", args.days, args.dir.join(format!("{role}.pem")).display());
        let hosts: Vec<String> = args.gateway_hosts.iter().filter(|h| !h.is_empty()).cloned().collect();
        if role == crate::role::GATEWAY && !hosts.is_empty() {
            // The gateway's HTTPS certificate is another one: it names hosts, and whoever holds
            // it (a load balancer, say) cannot call the services as the gateway.
            let https = ca.issue_server(&hosts, now - Duration::from_secs(60), until)?;
            write_pair(&args.dir, "gateway-https", &https)?;
            println!(
                "issued the gateway's HTTPS certificate for {} for {} days: {}",
                hosts.join(", "),
                args.days,
                args.dir.join("gateway-https.pem").display()
            );
        }
    }
    Ok(())
}

/// `NAME-key.pem` and `NAME.pem`: the key first, so a role reading between the two writes sees
/// a pair that does not match and keeps what it has until the next reading.
fn write_pair(dir: &Path, name: &str, issued: &agora_kit::tls::issue::Issued) -> anyhow::Result<()> {
    write(&dir.join(format!("{name}-key.pem")), &issued.key_pem, true)?;
    write(&dir.join(format!("{name}.pem")), &issued.cert_pem, false)
}

/// Writes `path` whole or not at all (a temporary file renamed over it); `secret` files are
/// readable by their owner only.
fn write(path: &Path, contents: &str, secret: bool) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    file.write_all(contents.as_bytes())?;
    if !secret {
        use std::os::unix::fs::PermissionsExt as _;
        file.as_file().set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    // The rename itself, on disk.
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}
