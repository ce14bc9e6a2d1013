//! A deployment's own CA and the certificates it issues to roles (`agora certs`, `make up`,
//! the tests). A production deployment may use cert-manager or its own PKI instead: the roles
//! only read PEM files.

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};

use rustls::pki_types::{CertificateDer, pem::PemObject};

use super::Identity;

/// A certificate and its key, PEM-encoded.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A certificate authority that can sign.
#[derive(Debug)]
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

fn rcgen_error(e: rcgen::Error) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

impl Ca {
    /// A new CA named `name`, valid from now for `valid`.
    pub fn new(name: &str, valid: Duration) -> anyhow::Result<Self> {
        let key = KeyPair::generate().map_err(rcgen_error)?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(60)).into();
        params.not_after = (now + valid).into();
        let cert = params.self_signed(&key).map_err(rcgen_error)?;
        Ok(Self { cert_pem: cert.pem(), issuer: Issuer::new(params, key) })
    }

    /// The CA a `new` one wrote out: its certificate and key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> anyhow::Result<Self> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| anyhow::anyhow!("not a PEM private key: {e}"))?;
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| anyhow::anyhow!("not a PEM certificate: {e}"))?;
        let (_, cert) =
            x509_parser::parse_x509_certificate(&der).map_err(|e| anyhow::anyhow!("unreadable certificate: {e}"))?;
        let is_ca = matches!(cert.basic_constraints(), Ok(Some(constraints)) if constraints.value.ca);
        anyhow::ensure!(is_ca, "the certificate is not a CA's (no basicConstraints CA:TRUE)");
        anyhow::ensure!(
            cert.public_key().raw == rcgen::PublicKeyData::subject_public_key_info(&key).as_slice(),
            "the key does not go with the CA certificate"
        );
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(rcgen_error)?;
        Ok(Self { issuer, cert_pem: cert_pem.to_owned() })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// A certificate for a public server (the gateway's HTTPS) naming `hosts` only: no
    /// identity of the deployment, and good for the server's end alone, so a load balancer
    /// holding it cannot call the roles as one of them.
    pub fn issue_server(
        &self,
        hosts: &[String],
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> anyhow::Result<Issued> {
        anyhow::ensure!(!hosts.is_empty(), "a server certificate names at least one host");
        let key = KeyPair::generate().map_err(rcgen_error)?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, hosts[0].as_str());
        params.subject_alt_names = host_names(hosts)?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        let cert = params.signed_by(&key, &self.issuer).map_err(rcgen_error)?;
        Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// A certificate for `identity` (its one URI SAN), good for both ends of a connection,
    /// valid from `not_before` to `not_after`; `dns` adds host names and addresses (a
    /// gateway's public certificate).
    pub fn issue(
        &self,
        identity: &Identity,
        dns: &[String],
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> anyhow::Result<Issued> {
        let key = KeyPair::generate().map_err(rcgen_error)?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, identity.name());
        let uri = identity.uri().try_into().map_err(rcgen_error)?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        params.subject_alt_names.extend(host_names(dns)?);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        let cert = params.signed_by(&key, &self.issuer).map_err(rcgen_error)?;
        Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

/// Host names and addresses as subject alternative names.
fn host_names(hosts: &[String]) -> anyhow::Result<Vec<SanType>> {
    hosts
        .iter()
        .map(|name| match name.parse() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => Ok(SanType::DnsName(name.as_str().try_into().map_err(rcgen_error)?)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn a_ca_is_read_back_only_with_its_own_key_and_only_if_it_is_a_ca() {
        let (a, b) = (Ca::new("a", DAY).unwrap(), Ca::new("b", DAY).unwrap());
        assert!(Ca::from_pem(a.cert_pem(), &a.key_pem()).is_ok());
        let mismatched = Ca::from_pem(a.cert_pem(), &b.key_pem()).unwrap_err().to_string();
        assert!(mismatched.contains("does not go with"), "{mismatched}");
        let now = SystemTime::now();
        let leaf = a.issue(&Identity::new("agora.local", "gateway"), &[], now, now + DAY).unwrap();
        let not_ca = Ca::from_pem(&leaf.cert_pem, &leaf.key_pem).unwrap_err().to_string();
        assert!(not_ca.contains("not a CA's"), "{not_ca}");
    }
}
