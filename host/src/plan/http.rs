//! The job's HTTP endpoint settings (the job file's `[http]` table, which
//! `weir run`'s `--http*` flags override): where it listens, its bearer
//! token, TLS, and whether `/metrics` is public.

use std::net::IpAddr;
use std::path::PathBuf;

/// The `[http]` table, checked; `None` means "not set here" (the command
/// line may set it, else the default applies).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HttpSettings {
    /// The address to bind (default `127.0.0.1`).
    pub bind: Option<IpAddr>,
    /// The port (default 0: any free port).
    pub port: Option<u16>,
    /// The bearer token (default: 32 random bytes, hex).
    pub token: Option<Token>,
    /// Serve HTTPS with this certificate and key.
    pub tls: Option<TlsFiles>,
    /// `/metrics` answers without the token even on a non-loopback address.
    pub metrics_public: bool,
}

/// PEM files of the endpoint's certificate (chain) and private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// A bearer token; its `Debug` form hides it (plans are logged).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Token(pub String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

/// Why a token is refused: it must fit an `Authorization` header and be
/// hard to guess.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TokenError {
    /// Too short to be a secret.
    #[error("must be at least {MIN_TOKEN_LENGTH} characters, found {0}")]
    TooShort(usize),
    /// A character an HTTP header cannot carry unquoted.
    #[error("may hold only visible ASCII characters (no spaces)")]
    Characters,
}

/// Fewest characters of a token given by hand.
pub(crate) const MIN_TOKEN_LENGTH: usize = 16;

impl Token {
    /// Checks a token given by hand.
    pub(crate) fn parse(text: &str) -> Result<Self, TokenError> {
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::Characters);
        }
        if text.len() < MIN_TOKEN_LENGTH {
            return Err(TokenError::TooShort(text.len()));
        }
        Ok(Self(text.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_must_be_long_visible_ascii_and_never_shown() {
        assert_eq!(
            Token::parse("0123456789abcdef").map(|t| t.0),
            Ok("0123456789abcdef".into())
        );
        assert_eq!(Token::parse("short"), Err(TokenError::TooShort(5)));
        assert_eq!(Token::parse("0123456789 abcdef"), Err(TokenError::Characters));
        assert_eq!(Token::parse("0123456789abcdéf"), Err(TokenError::Characters));
        assert_eq!(format!("{:?}", Token("secret".into())), "Token(…)");
    }
}
