//! Layered configuration: defaults, then an optional TOML file, then `AGORA_*` environment
//! variables and command-line flags (clap gives every flag an environment twin, so the two
//! arrive together as one set of overrides).
//!
//! Secrets are `secrecy::SecretString` in the final config: their `Debug` prints
//! `[REDACTED]`, so logging a config never leaks them.

use std::path::Path;

use figment::{
    Figment,
    providers::{Format, Serialized, Toml},
};
use serde::{Serialize, de::DeserializeOwned};

/// Builds `C` from its serde defaults, the file (if given) and the overrides.
///
/// `overrides` is usually a clap struct whose fields are `Option`s marked
/// `#[serde(skip_serializing_if = "Option::is_none")]`, so an absent flag leaves the file's
/// value in place.
pub fn load<C: DeserializeOwned>(file: Option<&Path>, overrides: &impl Serialize) -> Result<C, ConfigError> {
    let mut figment = Figment::new();
    if let Some(path) = file {
        if !path.exists() {
            return Err(ConfigError::MissingFile(path.display().to_string()));
        }
        figment = figment.merge(Toml::file(path));
    }
    figment.merge(Serialized::defaults(overrides)).extract().map_err(|e| ConfigError::Invalid(e.to_string()))
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    MissingFile(String),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::{ExposeSecret, SecretString};
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(default)]
    struct Sample {
        listen: String,
        secret: SecretString,
        retries: u32,
    }

    impl Default for Sample {
        fn default() -> Self {
            Self { listen: "127.0.0.1:1".into(), secret: SecretString::from("default"), retries: 3 }
        }
    }

    #[derive(Serialize, Default)]
    struct Flags {
        #[serde(skip_serializing_if = "Option::is_none")]
        listen: Option<String>,
    }

    #[test]
    fn file_overrides_defaults_and_flags_override_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agora.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:2\"\nsecret = \"from-file\"\n").unwrap();

        let from_file: Sample = load(Some(&path), &Flags::default()).unwrap();
        assert_eq!(from_file.listen, "127.0.0.1:2");
        assert_eq!(from_file.retries, 3, "unset keys keep their defaults");

        let flags = Flags { listen: Some("127.0.0.1:3".into()) };
        let from_flags: Sample = load(Some(&path), &flags).unwrap();
        assert_eq!(from_flags.listen, "127.0.0.1:3");
        assert_eq!(from_flags.secret.expose_secret(), "from-file");
    }

    #[test]
    fn secrets_never_print() {
        let cfg: Sample = load(None, &Flags::default()).unwrap();
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("default"), "secret leaked in {shown}");
    }

    #[test]
    fn missing_file_and_bad_values_are_clear_errors() {
        let err = load::<Sample>(Some(Path::new("/nonexistent/agora.toml")), &Flags::default());
        assert!(matches!(err, Err(ConfigError::MissingFile(_))));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agora.toml");
        std::fs::write(&path, "retries = \"many\"\n").unwrap();
        let err = load::<Sample>(Some(&path), &Flags::default()).unwrap_err();
        assert!(err.to_string().contains("retries"), "{err}");
    }
}
