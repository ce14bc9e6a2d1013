//! Account data parsed from the wire. Each type can only hold a valid value.

use std::fmt;

use agora_kit::identity::Role;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("email {0:?} is not a valid address")]
    Email(String),
    #[error("password must be between {MIN_PASSWORD} and {MAX_PASSWORD} characters")]
    PasswordLength,
    #[error("name must be 1 to {MAX_NAME} characters without control characters")]
    Name,
}

const MAX_EMAIL: usize = 254;
const MIN_PASSWORD: usize = 8;
/// argon2 accepts more, but a cap stops multi-megabyte "passwords" from burning CPU.
const MAX_PASSWORD: usize = 128;
const MAX_NAME: usize = 100;

/// An email address, trimmed and lower-cased (addresses are compared case-insensitively).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let email = raw.trim().to_lowercase();
        let bad = || ParseError::Email(raw.chars().take(MAX_EMAIL).collect());
        if email.len() > MAX_EMAIL || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let (local, domain) = email.split_once('@').ok_or_else(bad)?;
        let labels_ok = domain.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
        if local.is_empty() || local.len() > 64 || domain.contains('@') || !domain.contains('.') || !labels_ok {
            return Err(bad());
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password of acceptable length. Its `Debug` hides the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let n = raw.chars().count();
        if (MIN_PASSWORD..=MAX_PASSWORD).contains(&n) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ParseError::PasswordLength)
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([REDACTED])")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let name = raw.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
            return Err(ParseError::Name);
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A registration request that passed every check.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: Email,
    pub password: Password,
    pub name: DisplayName,
}

impl NewUser {
    pub fn parse(email: &str, password: &str, name: &str) -> Result<Self, ParseError> {
        Ok(Self { email: Email::parse(email)?, password: Password::parse(password)?, name: DisplayName::parse(name)? })
    }
}

/// A stored account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub created_at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_emails_are_normalised() {
        assert_eq!(Email::parse("  Ada@Example.COM ").unwrap().as_str(), "ada@example.com");
        assert!(Email::parse("a.b+tag@mail.example.org").is_ok());
    }

    #[test]
    fn malformed_emails_are_refused() {
        for bad in [
            "",
            "plain",
            "@example.com",
            "ada@",
            "ada@example",
            "ada@@example.com",
            "a da@example.com",
            "ada@exa mple.com",
            "ada@-example.com",
            "ada@example..com",
            "ada@exam\nple.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let long = format!("{}@example.com", "a".repeat(300));
        assert!(Email::parse(&long).is_err());
    }

    #[test]
    fn passwords_have_length_bounds_and_hidden_debug() {
        assert_eq!(Password::parse("short"), Err(ParseError::PasswordLength));
        assert_eq!(Password::parse(&"x".repeat(129)), Err(ParseError::PasswordLength));
        let p = Password::parse("correct horse").unwrap();
        assert!(!format!("{p:?}").contains("horse"));
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(DisplayName::parse("  Ada ").unwrap().as_str(), "Ada");
        assert_eq!(DisplayName::parse("   "), Err(ParseError::Name));
        assert_eq!(DisplayName::parse("a\u{0}b"), Err(ParseError::Name));
        assert_eq!(DisplayName::parse(&"n".repeat(101)), Err(ParseError::Name));
    }
}
