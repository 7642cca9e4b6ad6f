//! Machine API keys: `hoopk_<id>_<secret>`. The id is public (it names the key in logs and
//! listings); only the SHA-256 of the whole key is stored. A key has 256 bits of entropy, so a
//! fast hash is enough: there is nothing to brute-force.

use crate::util::{random_chars, random_token, sha256_hex};

/// Every API key starts with this, so the gateway can tell one from a JWT without trying both.
pub const PREFIX: &str = "hoopk_";

/// A freshly generated key: the secret is shown once and never stored.
pub struct NewKey {
    /// Public id.
    pub id: String,
    /// The whole key, to hand to the user.
    pub secret: String,
    /// What is stored.
    pub hash: String,
}

/// Generates a new key.
pub fn generate() -> NewKey {
    let id = random_chars(b"abcdefghijkmnpqrstuvwxyz23456789", 10);
    let secret = format!("{PREFIX}{id}_{}", random_token(32));
    let hash = sha256_hex(secret.as_bytes());
    NewKey { id, secret, hash }
}

/// The stored hash of a presented key.
pub fn hash(presented: &str) -> String {
    sha256_hex(presented.as_bytes())
}

/// The public id embedded in a presented key, if it has the right shape.
pub fn id_of(presented: &str) -> Option<&str> {
    presented
        .strip_prefix(PREFIX)?
        .split_once('_')
        .map(|(id, _)| id)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn generated_keys_have_their_id_and_hash() {
        let k = super::generate();
        assert!(k.secret.starts_with(super::PREFIX));
        assert_eq!(super::id_of(&k.secret), Some(k.id.as_str()));
        assert_eq!(super::hash(&k.secret), k.hash);
        assert_ne!(super::generate().secret, k.secret);
    }
}
