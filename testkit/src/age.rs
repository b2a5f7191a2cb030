//! age (X25519) as a client uses it: data encrypted to a recipient before upload, identity
//! files as `age-keygen` writes them.

use std::io::{Read, Write};

use age::secrecy::ExposeSecret;

pub use age::x25519::{Identity, Recipient};

/// Encrypts `plaintext` to one recipient (`age1…`).
pub fn encrypt(recipient: &str, plaintext: &[u8]) -> Vec<u8> {
    let recipient: Recipient = recipient.parse().expect("an age recipient");
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
            .expect("encryptor");
    let mut out = Vec::new();
    let mut writer = encryptor.wrap_output(&mut out).expect("wrap");
    writer.write_all(plaintext).expect("write");
    writer.finish().expect("finish");
    out
}

pub fn decrypt(identity: &Identity, ciphertext: &[u8]) -> Vec<u8> {
    let decryptor = age::Decryptor::new(ciphertext).expect("an age file");
    let mut reader = decryptor
        .decrypt(std::iter::once(identity as &dyn age::Identity))
        .expect("decrypts");
    let mut out = Vec::new();
    reader.read_to_end(&mut out).expect("read");
    out
}

/// The identity file `age-keygen` writes.
pub fn identity_file(identity: &Identity) -> String {
    format!(
        "# public key: {}\n{}\n",
        identity.to_public(),
        identity.to_string().expose_secret()
    )
}

/// The identity in an identity file (comments allowed), as `private_key` delivers it.
pub fn parse_identity_file(text: &str) -> Identity {
    text.lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .expect("an identity line")
        .parse()
        .expect("identity")
}
