//! Identifiers: a readable prefix and a time-ordered UUID (v7), so ids sort by creation. Where
//! two kinds of string could be mixed up (an account's id and its username travel together
//! everywhere), the id has a type of its own.

use serde::{Deserialize, Serialize};

/// A fresh identifier: `prefix` followed by a UUIDv7 in simple form.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::now_v7().simple())
}

/// Declares a string identifier type with its prefix.
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A fresh id.
            pub fn generate() -> Self {
                $name(new_id(Self::PREFIX))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        /// An id as stored or as given; ids of earlier versions keep their text.
        impl From<String> for $name {
            fn from(text: String) -> Self {
                $name(text)
            }
        }

        impl From<&str> for $name {
            fn from(text: &str) -> Self {
                $name(text.to_owned())
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
    };
}

id_type!(
    /// An account (`usr_…`); never to be confused with its username.
    AccountId,
    "usr_"
);

id_type!(
    /// A usage policy of controlled data (`pol_…`, A.3.7).
    PolicyId,
    "pol_"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_prefix_and_sort_by_creation() {
        let a = AccountId::generate();
        let b = AccountId::generate();
        assert!(a.as_str().starts_with("usr_"));
        assert!(a < b);
        assert_eq!(serde_json::to_string(&a).expect("json"), format!("\"{a}\""));
    }
}
