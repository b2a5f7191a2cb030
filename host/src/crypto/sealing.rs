//! age (https://age-encryption.org) for delivery: providers encrypt their data to the X25519
//! recipient they registered (`public_key`), deposit the matching identity sealed to the
//! operator's escrow recipient, and at settlement the host re-encrypts that identity to the
//! buyer's own recipient. Everything here interoperates with the `age` command line tool.

use std::io::{Read, Write};

use age::secrecy::ExposeSecret;
use zeroize::Zeroizing;

/// Identity files are a few hundred bytes; anything far larger is not one.
const MAX_IDENTITY_FILE: u64 = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("is not an age X25519 recipient (age1… in Bech32)")]
    NotARecipient,
    #[error(
        "is not an age file this server can open: seal it to the escrowRecipient of GET /v1/keys \
         ({0})"
    )]
    NotSealedToEscrow(String),
    #[error(
        "does not contain an age identity file with exactly one X25519 identity \
         (AGE-SECRET-KEY-1…), as age-keygen writes it"
    )]
    NotAnIdentityFile,
    #[error("age encryption failed: {0}")]
    Encrypt(String),
    #[error("age decryption failed: {0}")]
    Decrypt(String),
}

/// Parses an `age1…` X25519 recipient.
pub fn parse_recipient(text: &str) -> Result<age::x25519::Recipient, SealError> {
    text.trim()
        .parse::<age::x25519::Recipient>()
        .map_err(|_| SealError::NotARecipient)
}

/// Parses an identity file (comments and blank lines allowed) holding exactly one X25519
/// identity.
pub fn parse_identity_file(text: &str) -> Result<age::x25519::Identity, SealError> {
    let mut found = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let identity = line
            .parse::<age::x25519::Identity>()
            .map_err(|_| SealError::NotAnIdentityFile)?;
        if found.replace(identity).is_some() {
            return Err(SealError::NotAnIdentityFile);
        }
    }
    found.ok_or(SealError::NotAnIdentityFile)
}

/// An identity file as `age-keygen` writes it.
pub fn identity_file_text(identity: &age::x25519::Identity, created: &str) -> Zeroizing<String> {
    Zeroizing::new(format!(
        "# created: {created}\n# public key: {}\n{}\n",
        identity.to_public(),
        identity.to_string().expose_secret()
    ))
}

/// Encrypts `plaintext` to one recipient (binary age format).
pub fn encrypt_to(
    recipient: &age::x25519::Recipient,
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let encryptor = age::Encryptor::with_recipients(std::iter::once(recipient as _))
        .map_err(|e| SealError::Encrypt(e.to_string()))?;
    let mut out = Vec::with_capacity(plaintext.len() + 256);
    let mut writer = encryptor
        .wrap_output(&mut out)
        .map_err(|e| SealError::Encrypt(e.to_string()))?;
    writer
        .write_all(plaintext)
        .and_then(|()| writer.finish().map(|_| ()))
        .map_err(|e| SealError::Encrypt(e.to_string()))?;
    Ok(out)
}

/// Decrypts a small age file (binary or ASCII-armoured) with any of `identities`, into memory
/// that is wiped when dropped.
pub fn decrypt_small<'a>(
    ciphertext: &[u8],
    identities: impl Iterator<Item = &'a age::x25519::Identity>,
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let decryptor = age::Decryptor::new_buffered(age::armor::ArmoredReader::new(ciphertext))
        .map_err(|e| SealError::Decrypt(e.to_string()))?;
    let reader = decryptor
        .decrypt(identities.map(|i| i as &dyn age::Identity))
        .map_err(|e| SealError::Decrypt(e.to_string()))?;
    let mut plaintext = Zeroizing::new(Vec::new());
    reader
        .take(MAX_IDENTITY_FILE + 1)
        .read_to_end(&mut plaintext)
        .map_err(|e| SealError::Decrypt(e.to_string()))?;
    if plaintext.len() as u64 > MAX_IDENTITY_FILE {
        return Err(SealError::NotAnIdentityFile);
    }
    Ok(plaintext)
}

/// Opens a delivery key deposited sealed to (any of) the operator's escrow identities
/// (`KeyRing::escrow_identities`). The identity exists only in memory and is wiped when dropped.
pub fn unseal_identity<'a>(
    escrow: impl Iterator<Item = &'a age::x25519::Identity>,
    sealed: &[u8],
) -> Result<age::x25519::Identity, SealError> {
    let plaintext = decrypt_small(sealed, escrow).map_err(|e| match e {
        SealError::Decrypt(m) => SealError::NotSealedToEscrow(m),
        other => other,
    })?;
    let text = std::str::from_utf8(&plaintext).map_err(|_| SealError::NotAnIdentityFile)?;
    parse_identity_file(text)
}

/// The provider's identity file, encrypted to the buyer: what `private_key.ciphertext` holds.
pub fn rewrap_identity(
    identity: &age::x25519::Identity,
    buyer: &age::x25519::Recipient,
    created: &str,
) -> Result<Vec<u8>, SealError> {
    let text = identity_file_text(identity, created);
    encrypt_to(buyer, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_unseal_and_rewrap() {
        let escrow_identity = age::x25519::Identity::generate();
        let ring = std::iter::once(&escrow_identity);
        let provider = age::x25519::Identity::generate();
        let file = identity_file_text(&provider, "2025-01-01T00:00:00Z");
        let escrow = escrow_identity.to_public();
        let sealed = encrypt_to(&escrow, file.as_bytes()).expect("seal");
        let opened = unseal_identity(ring, &sealed).expect("unseal");
        assert_eq!(
            opened.to_public().to_string(),
            provider.to_public().to_string()
        );

        let buyer = age::x25519::Identity::generate();
        let wrapped = rewrap_identity(&opened, &buyer.to_public(), "now").expect("rewrap");
        let plain = decrypt_small(&wrapped, std::iter::once(&buyer)).expect("decrypt");
        let again = parse_identity_file(std::str::from_utf8(&plain).expect("utf-8")).expect("id");
        assert_eq!(
            again.to_public().to_string(),
            provider.to_public().to_string()
        );
    }

    #[test]
    fn refusals() {
        let escrow_identity = age::x25519::Identity::generate();
        let ring = || std::iter::once(&escrow_identity);
        assert_eq!(
            parse_recipient("age1notarecipient").err(),
            Some(SealError::NotARecipient)
        );
        // Sealed to someone else.
        let stranger = age::x25519::Identity::generate();
        let sealed = encrypt_to(&stranger.to_public(), b"AGE-SECRET-KEY-1").expect("seal");
        assert!(matches!(
            unseal_identity(ring(), &sealed),
            Err(SealError::NotSealedToEscrow(_))
        ));
        // Sealed to the escrow, but not an identity file.
        let escrow = escrow_identity.to_public();
        let sealed = encrypt_to(&escrow, b"hello").expect("seal");
        assert_eq!(
            unseal_identity(ring(), &sealed).err(),
            Some(SealError::NotAnIdentityFile)
        );
        // Two identities are ambiguous.
        let a = identity_file_text(&age::x25519::Identity::generate(), "t");
        let b = identity_file_text(&age::x25519::Identity::generate(), "t");
        assert_eq!(
            parse_identity_file(&format!("{}{}", a.as_str(), b.as_str())).err(),
            Some(SealError::NotAnIdentityFile)
        );
        assert!(matches!(
            unseal_identity(ring(), b"not age"),
            Err(SealError::NotSealedToEscrow(_))
        ));
    }
}
