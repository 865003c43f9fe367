//! Secrets: random ids and secrets, argon2id hashes of client secrets (checked in constant
//! time), and SHA-256 of API keys.

use super::StoreError;
use ring::rand::{SecureRandom, SystemRandom};

/// Hex SHA-256, for API keys.
pub(crate) fn sha256_hex(s: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, s.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Random text from `alphabet`-free lower-case base32, for ids and secrets.
pub(crate) fn random_token(bytes: usize) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut buf = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut buf)
        .expect("system randomness");
    buf.iter()
        .map(|b| ALPHABET[usize::from(b & 31)] as char)
        .collect()
}

/// Hashes a secret with argon2id (PHC string).
pub(crate) fn hash_secret(secret: &str) -> Result<String, StoreError> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut raw = [0u8; 16];
    SystemRandom::new()
        .fill(&mut raw)
        .map_err(|_| StoreError::Backend("no system randomness".into()))?;
    let salt =
        SaltString::encode_b64(&raw).map_err(|e| StoreError::Backend(format!("salt: {e}")))?;
    argon2::Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Backend(format!("hashing failed: {e}")))
}

/// Checks a secret against an argon2id PHC string, in constant time.
pub(crate) fn verify_secret(secret: &str, hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(hash)
        .map(|h| {
            argon2::Argon2::default()
                .verify_password(secret.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}
