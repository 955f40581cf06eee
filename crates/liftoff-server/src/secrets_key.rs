//! Envelope encryption of the secrets the server stores (git credentials,
//! its own HMAC secrets): each value gets a fresh data key (AES-256-GCM),
//! and the data key is stored wrapped by the key-encryption key read from
//! `--secrets-key-file` (a Kubernetes Secret mounted as a file). A sealed
//! value names its key's id, so a new key can take over: values under an
//! old key (`--old-secrets-key-file`) have their data key re-wrapped, the
//! ciphertext untouched.
//!
//! A sealed value is `lfenc1.<key id>.<base64url: wrap nonce, wrapped
//! data key, nonce, ciphertext>`: only URL-safe characters, so it can stand
//! in a URL's userinfo.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

const PREFIX: &str = "lfenc1.";
const KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;
const WRAPPED_LEN: usize = KEY_LEN + TAG_LEN;

/// Why a key file or a sealed value could not be used. Messages name the
/// file or the key id, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretsKeyError {
    /// The key file could not be read.
    #[error("cannot read the secrets key file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The key file does not hold 32 bytes in base64.
    #[error("the secrets key file {path} must hold 32 random bytes in base64 (e.g. `openssl rand -base64 32`){found}")]
    Format { path: String, found: String },
    /// A value is sealed under a key the server was not given.
    #[error(
        "{what} is encrypted under secrets key {id}, which the server was not given (its key is {current}, from {path}); start it with that key's file as --secrets-key-file, or as --old-secrets-key-file to rotate"
    )]
    UnknownKey { what: String, id: String, current: String, path: String },
    /// A value is sealed, and the server has no key at all.
    #[error("{what} is encrypted under secrets key {id}: start the server with that key's file as --secrets-key-file")]
    NoKey { what: String, id: String },
    /// A sealed value does not open under its key: altered, or another key with the same id.
    #[error(
        "{what} does not decrypt under secrets key {id} ({path}): the stored value was altered or the key file is not that key"
    )]
    Open { what: String, id: String, path: String },
}

/// One key-encryption key, from its file.
struct Kek {
    id: String,
    path: PathBuf,
    key: LessSafeKey,
}

impl Kek {
    fn read(path: &Path) -> Result<Self, SecretsKeyError> {
        let shown = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|source| SecretsKeyError::Read { path: shown.clone(), source })?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| SecretsKeyError::Format { path: shown.clone(), found: ": it is not base64".into() })?;
        if bytes.len() != KEY_LEN {
            return Err(SecretsKeyError::Format {
                path: shown,
                found: format!(": it decodes to {} bytes", bytes.len()),
            });
        }
        // The id is a digest of the key under a label of its own: it names the key and reveals nothing of it.
        let id =
            hex::encode(&Sha256::new().chain_update(b"liftoff secrets key id\0").chain_update(&bytes).finalize()[..8]);
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &bytes).expect("a 32-byte AES-256 key"));
        Ok(Self { id, path: path.to_path_buf(), key })
    }
}

/// The server's key-encryption keys: the current one, which seals, and
/// older ones, which only open (for rotation).
pub struct SecretsKeys {
    current: Kek,
    old: Vec<Kek>,
}

impl std::fmt::Debug for SecretsKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsKeys")
            .field("current", &self.current.id)
            .field("old", &self.old.iter().map(|k| &k.id).collect::<Vec<_>>())
            .finish()
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    aws_lc_rs::rand::fill(&mut b).expect("the system's random source");
    b
}

/// Whether `value` is a sealed value; its key id if so.
pub fn sealed_key_id(value: &str) -> Option<&str> {
    let rest = value.strip_prefix(PREFIX)?;
    let (id, _) = rest.split_once('.')?;
    Some(id)
}

impl SecretsKeys {
    /// Reads the current key and the old ones; errors name the file.
    pub fn read(current: &Path, old: &[PathBuf]) -> Result<Self, SecretsKeyError> {
        Ok(Self { current: Kek::read(current)?, old: old.iter().map(|p| Kek::read(p)).collect::<Result<_, _>>()? })
    }

    /// The current key's id.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    fn by_id(&self, id: &str) -> Option<&Kek> {
        std::iter::once(&self.current).chain(&self.old).find(|k| k.id == id)
    }

    /// `plain` sealed under the current key; `purpose` binds it to where it is
    /// stored (a value moved elsewhere does not open).
    pub fn seal(&self, purpose: &str, plain: &[u8]) -> String {
        let data_key = random::<KEY_LEN>();
        let nonce = random::<NONCE_LEN>();
        let mut body = plain.to_vec();
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &data_key).expect("a 32-byte key"))
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(purpose.as_bytes()), &mut body)
            .expect("AES-GCM seals any length this small");
        let (wrap_nonce, wrapped) = self.wrap(&self.current, &data_key);
        let mut out = Vec::with_capacity(NONCE_LEN * 2 + WRAPPED_LEN + body.len());
        out.extend_from_slice(&wrap_nonce);
        out.extend_from_slice(&wrapped);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        format!("{PREFIX}{}.{}", self.current.id, URL_SAFE_NO_PAD.encode(out))
    }

    fn wrap(&self, kek: &Kek, data_key: &[u8; KEY_LEN]) -> ([u8; NONCE_LEN], Vec<u8>) {
        let nonce = random::<NONCE_LEN>();
        let mut wrapped = data_key.to_vec();
        kek.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(kek.id.as_bytes()), &mut wrapped)
            .expect("AES-GCM seals 32 bytes");
        (nonce, wrapped)
    }

    /// The parts of a sealed value and its key: (key, data key, nonce, ciphertext).
    fn unwrap<'a>(&'a self, what: &str, sealed: &str) -> Result<(&'a Kek, [u8; KEY_LEN], Vec<u8>), SecretsKeyError> {
        let id = sealed_key_id(sealed).unwrap_or_default();
        let kek = self.by_id(id).ok_or_else(|| SecretsKeyError::UnknownKey {
            what: what.to_string(),
            id: id.to_string(),
            current: self.current.id.clone(),
            path: self.current.path.display().to_string(),
        })?;
        let fail = || SecretsKeyError::Open {
            what: what.to_string(),
            id: id.to_string(),
            path: kek.path.display().to_string(),
        };
        let encoded = &sealed[PREFIX.len() + id.len() + 1..];
        let raw = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| fail())?;
        if raw.len() < NONCE_LEN * 2 + WRAPPED_LEN + TAG_LEN {
            return Err(fail());
        }
        let (wrap_nonce, rest) = raw.split_at(NONCE_LEN);
        let (wrapped, rest) = rest.split_at(WRAPPED_LEN);
        let mut data_key = wrapped.to_vec();
        let nonce = Nonce::try_assume_unique_for_key(wrap_nonce).map_err(|_| fail())?;
        let opened = kek.key.open_in_place(nonce, Aad::from(kek.id.as_bytes()), &mut data_key).map_err(|_| fail())?;
        let data_key: [u8; KEY_LEN] = opened.try_into().map_err(|_| fail())?;
        Ok((kek, data_key, rest.to_vec()))
    }

    /// The plain bytes of a sealed value. `what` names it in errors.
    pub fn open(&self, what: &str, purpose: &str, sealed: &str) -> Result<Vec<u8>, SecretsKeyError> {
        let (kek, data_key, rest) = self.unwrap(what, sealed)?;
        let fail = || SecretsKeyError::Open {
            what: what.to_string(),
            id: kek.id.clone(),
            path: kek.path.display().to_string(),
        };
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let mut body = body.to_vec();
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| fail())?;
        let plain = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &data_key).expect("a 32-byte key"))
            .open_in_place(nonce, Aad::from(purpose.as_bytes()), &mut body)
            .map_err(|_| fail())?;
        Ok(plain.to_vec())
    }

    /// A value sealed under an old key with its data key wrapped again by
    /// the current one (the ciphertext kept); `None` when it is already
    /// under the current key. The value is checked to open first.
    pub fn rewrap(&self, what: &str, purpose: &str, sealed: &str) -> Result<Option<String>, SecretsKeyError> {
        self.open(what, purpose, sealed)?;
        let (kek, data_key, rest) = self.unwrap(what, sealed)?;
        if kek.id == self.current.id {
            return Ok(None);
        }
        let (wrap_nonce, wrapped) = self.wrap(&self.current, &data_key);
        let mut out = Vec::with_capacity(NONCE_LEN + WRAPPED_LEN + rest.len());
        out.extend_from_slice(&wrap_nonce);
        out.extend_from_slice(&wrapped);
        out.extend_from_slice(&rest);
        Ok(Some(format!("{PREFIX}{}.{}", self.current.id, URL_SAFE_NO_PAD.encode(out))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_file(dir: &Path, name: &str, byte: u8) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, base64::engine::general_purpose::STANDARD.encode([byte; 32]) + "\n").unwrap();
        p
    }

    #[test]
    fn seal_open_and_rewrap() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (key_file(dir.path(), "a", 1), key_file(dir.path(), "b", 2));
        let old = SecretsKeys::read(&a, &[]).unwrap();
        let sealed = old.seal("git-remote", b"user:token");
        assert!(!sealed.contains("token") && sealed.starts_with("lfenc1."), "{sealed}");
        assert!(sealed.bytes().all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c)), "URL-safe: {sealed}");
        assert_eq!(old.open("x", "git-remote", &sealed).unwrap(), b"user:token");
        assert_ne!(old.seal("git-remote", b"user:token"), sealed, "a fresh data key and nonce each time");
        // bound to its purpose
        assert!(matches!(old.open("x", "server-secret", &sealed), Err(SecretsKeyError::Open { .. })));

        let new = SecretsKeys::read(&b, std::slice::from_ref(&a)).unwrap();
        let rewrapped = new.rewrap("x", "git-remote", &sealed).unwrap().expect("under the old key");
        assert_eq!(sealed_key_id(&rewrapped), Some(new.current_id()));
        assert_eq!(new.rewrap("x", "git-remote", &rewrapped).unwrap(), None);
        // the old key no longer needed
        let only_new = SecretsKeys::read(&b, &[]).unwrap();
        assert_eq!(only_new.open("x", "git-remote", &rewrapped).unwrap(), b"user:token");
        let e = only_new.open("the job's git remote", "git-remote", &sealed).unwrap_err().to_string();
        assert!(e.contains(old.current_id()) && e.contains(&b.display().to_string()), "{e}");

        // altered: refused
        let mut altered = rewrapped.clone().into_bytes();
        let last = altered.len() - 2;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        assert!(matches!(only_new.open("x", "git-remote", &altered), Err(SecretsKeyError::Open { .. })));
    }

    #[test]
    fn bad_key_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        let e = SecretsKeys::read(&p, &[]).unwrap_err().to_string();
        assert!(e.contains(&p.display().to_string()), "{e}");
        std::fs::write(&p, "c2hvcnQ=").unwrap();
        let e = SecretsKeys::read(&p, &[]).unwrap_err().to_string();
        assert!(e.contains(&p.display().to_string()) && e.contains("5 bytes"), "{e}");
        std::fs::write(&p, "not base64 at all!").unwrap();
        let e = SecretsKeys::read(&p, &[]).unwrap_err().to_string();
        assert!(e.contains("not base64"), "{e}");
    }
}
