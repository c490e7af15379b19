//! Who may become an operator: names with argon2 password hashes, and the
//! check of `/oper` credentials against them.
//!
//! A check costs what argon2 costs on purpose (tens of milliseconds and
//! its memory), so it runs on the blocking pool, never on a connection's
//! task, and at most [`MAX_CHECKS`] run at once: a crowd sending `/oper`
//! waits its turn (at most [`CHECK_WAIT`]) instead of taking the machine's
//! memory. Each connection
//! can try only once per `session::OPER_INTERVAL`, so guessing is slow
//! whatever the crowd. A name that is not an operator is checked against
//! a hash all the same, so the answer's timing does not tell which names
//! exist.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use tokio::sync::Semaphore;

use crate::protocol::names::Name;

/// Credential checks running at once, all connections together.
pub const MAX_CHECKS: usize = 2;

/// Longest a try waits for a free check; past it, it is refused as wrong
/// credentials, so a crowd of tries cannot hold a connection (or an
/// operator) waiting without end.
pub const CHECK_WAIT: Duration = Duration::from_secs(5);

/// The checks, shared by every set of operators a reload makes, so the
/// bound holds across reloads.
static CHECKS: Semaphore = Semaphore::const_new(MAX_CHECKS);

/// An `--operator` that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// Not `NAME:HASH`.
    #[error("--operator {0:?}: expected NAME:HASH (make a hash with `chatgate hash-password`)")]
    Malformed(String),
    /// The hash is not a PHC string argon2 reads.
    #[error("--operator {name}: the password hash is not an argon2 PHC string: {error}")]
    BadHash {
        /// The operator's name.
        name: String,
        /// What argon2 said.
        error: String,
    },
    /// A name that is not a valid user name.
    #[error("--operator {0:?}: the name must be 1-20 characters from A-Z a-z 0-9 _ - . #")]
    BadName(String),
    /// The same name twice.
    #[error("--operator {0}: given twice")]
    Twice(String),
}

/// The configured operators.
#[derive(Debug, Clone)]
pub struct Operators {
    /// Name to PHC hash string; names compare exactly.
    hashes: Arc<HashMap<String, String>>,
    /// Checked for names that are not operators, so they take as long.
    decoy: Arc<String>,
}

impl Operators {
    /// Reads `--operator NAME:HASH` values, checking every hash parses.
    pub fn parse(specs: &[String]) -> Result<Operators, OperatorError> {
        let mut hashes = HashMap::new();
        for spec in specs {
            let Some((name, hash)) = spec.split_once(':') else {
                return Err(OperatorError::Malformed(spec.clone()));
            };
            if name.is_empty() || hash.is_empty() {
                return Err(OperatorError::Malformed(spec.clone()));
            }
            // An operator's name can stand in room lines as `<op>`, so it
            // keeps to what a user name may be.
            if Name::parse(name).is_none() {
                return Err(OperatorError::BadName(name.to_owned()));
            }
            PasswordHash::new(hash).map_err(|e| OperatorError::BadHash {
                name: name.to_owned(),
                error: e.to_string(),
            })?;
            if hashes.insert(name.to_owned(), hash.to_owned()).is_some() {
                return Err(OperatorError::Twice(name.to_owned()));
            }
        }
        let decoy = match hashes.values().next() {
            Some(hash) => hash.clone(),
            None => String::new(),
        };
        Ok(Operators {
            hashes: Arc::new(hashes),
            decoy: Arc::new(decoy),
        })
    }

    /// Whether any operator is configured.
    pub fn any(&self) -> bool {
        !self.hashes.is_empty()
    }

    /// Whether `password` is `name`'s. Waits at most [`CHECK_WAIT`] for a
    /// free check (false past it).
    pub async fn check(&self, name: &str, password: &str) -> bool {
        if !self.any() {
            return false;
        }
        let Ok(Ok(turn)) = tokio::time::timeout(CHECK_WAIT, CHECKS.acquire()).await else {
            return false;
        };
        let (hash, known) = match self.hashes.get(name) {
            Some(hash) => (hash.clone(), true),
            None => (self.decoy.to_string(), false),
        };
        let password = password.to_owned();
        // The turn goes with the hash: a try given up (at shutdown) still
        // holds its place until argon2 is done.
        let right = tokio::task::spawn_blocking(move || {
            let right = verify(&hash, &password);
            drop(turn);
            right
        })
        .await
        .unwrap_or(false);
        known && right
    }
}

/// Whether `password` matches the PHC string `hash`.
fn verify(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// A new argon2id hash of `password`, as a PHC string for `--operator`.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn right_wrong_and_unknown() {
        let hash = hash_password("hunter2").unwrap();
        let ops = Operators::parse(&[format!("root:{hash}")]).unwrap();
        assert!(ops.check("root", "hunter2").await);
        assert!(!ops.check("root", "hunter3").await);
        assert!(!ops.check("admin", "hunter2").await);
        assert!(!ops.check("ROOT", "hunter2").await);
    }

    #[test]
    fn bad_specs_are_errors() {
        assert!(matches!(
            Operators::parse(&["root".into()]),
            Err(OperatorError::Malformed(_))
        ));
        assert!(matches!(
            Operators::parse(&["root:plain".into()]),
            Err(OperatorError::BadHash { .. })
        ));
        let hash = hash_password("x").unwrap();
        assert!(matches!(
            Operators::parse(&[format!("a:{hash}"), format!("a:{hash}")]),
            Err(OperatorError::Twice(_))
        ));
    }
}
