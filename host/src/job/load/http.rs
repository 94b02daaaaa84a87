//! The `[http]` table: the job's HTTP endpoint.

use std::net::IpAddr;

use toml::Spanned;

use super::Builder;
use crate::job::spec::HttpSpec;
use crate::plan::http::{HttpSettings, TlsFiles, Token};

impl Builder<'_> {
    /// The HTTP endpoint settings of the `[http]` table (all unset without one).
    pub(super) fn http(&mut self, spec: Option<&Spanned<HttpSpec>>) -> HttpSettings {
        let Some(spec) = spec else {
            return HttpSettings::default();
        };
        let table = spec.span();
        let spec = spec.get_ref();
        let bind = spec.bind.as_ref().and_then(|bind| {
            let text = self.text(bind)?;
            match text.parse::<IpAddr>() {
                Ok(address) => Some(address),
                Err(_) => {
                    self.errors.push(self.locator.error(
                        bind.span(),
                        "http → bind",
                        format!("`{text}` is not an IP address (say `127.0.0.1`, `0.0.0.0` or `::1`)"),
                    ));
                    None
                }
            }
        });
        let token = spec.token.as_ref().and_then(|token| {
            let text = self.text(token)?;
            Token::parse(&text)
                .map_err(|e| {
                    self.errors
                        .push(self.locator.error(token.span(), "http → token", e.to_string()))
                })
                .ok()
        });
        let tls = match (&spec.cert, &spec.key) {
            (Some(cert), Some(key)) => {
                let cert = self.readable(cert, "http → cert");
                let key = self.readable(key, "http → key");
                cert.zip(key).map(|(cert, key)| TlsFiles { cert, key })
            }
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => {
                let (present, missing) = if spec.cert.is_some() {
                    ("cert", "key")
                } else {
                    ("key", "cert")
                };
                self.errors.push(self.locator.error(
                    table,
                    format!("http → {missing}"),
                    format!("`{present}` needs `{missing}` too (HTTPS needs both PEM files)"),
                ));
                None
            }
        };
        let port = spec
            .port
            .as_ref()
            .and_then(|port| match u16::try_from(*port.get_ref()) {
                Ok(port) => Some(port),
                Err(_) => {
                    self.errors.push(self.locator.error(
                        port.span(),
                        "http → port",
                        format!("must be 0 (any free port) to 65535, found {}", port.get_ref()),
                    ));
                    None
                }
            });
        HttpSettings {
            bind,
            port,
            token,
            tls,
            metrics_public: spec.metrics_public.unwrap_or(false),
        }
    }

    /// The path in `value`, if the file can be read (else an error).
    fn readable(&mut self, value: &Spanned<String>, field: &str) -> Option<std::path::PathBuf> {
        let path = self.text(value).map(std::path::PathBuf::from)?;
        match std::fs::File::open(&path) {
            Ok(_) => Some(path),
            Err(e) => {
                self.errors.push(self.locator.error(
                    value.span(),
                    field,
                    format!("cannot read `{}`: {e}", path.display()),
                ));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::path::{Path, PathBuf};

    use crate::job::load::{LoadOptions, load_job_text};
    use crate::plan::http::{HttpSettings, TlsFiles, Token};
    use crate::wasm::{EngineOptions, WasmRuntime};

    /// Loads a source-to-sink job with `http` as its `[http]` table.
    fn load(http: &str) -> Result<HttpSettings, String> {
        let wasm = WasmRuntime::new(EngineOptions::default()).expect("engine");
        let text = format!(
            "[http]\n{http}\n\n[[source]]\nuid = \"in\"\ntype = \"generator\"\nevents = 10\n\n[[sink]]\nuid = \"out\"\ninput = \"in\"\ntype = \"stdout\"\n"
        );
        load_job_text(Path::new("job.toml"), &text, &LoadOptions::default(), &wasm)
            .map(|plan| plan.settings.http)
            .map_err(|errors| errors.to_string())
    }

    #[test]
    fn the_http_table_sets_every_field() {
        let dir = tempfile::tempdir().expect("a folder");
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, "").expect("written");
        std::fs::write(&key, "").expect("written");
        let table = format!(
            "port = 8081\nbind = \"0.0.0.0\"\ntoken = \"0123456789abcdef0123\"\ncert = \"{}\"\nkey = \"{}\"\nmetrics_public = true",
            cert.display(),
            key.display()
        );
        assert_eq!(
            load(&table),
            Ok(HttpSettings {
                bind: Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                port: Some(8081),
                token: Some(Token("0123456789abcdef0123".into())),
                tls: Some(TlsFiles { cert, key }),
                metrics_public: true,
            })
        );
        assert_eq!(load(""), Ok(HttpSettings::default()));
    }

    #[test]
    fn bad_http_values_name_field_and_line() {
        assert_eq!(
            load("port = 8080\nbind = \"localhost\""),
            Err(
                "job.toml:3: http → bind: `localhost` is not an IP address (say `127.0.0.1`, `0.0.0.0` or `::1`)"
                    .into()
            )
        );
        assert_eq!(
            load("token = \"short\""),
            Err("job.toml:2: http → token: must be at least 16 characters, found 5".into())
        );
        assert_eq!(
            load("token = \"with a space inside it\""),
            Err("job.toml:2: http → token: may hold only visible ASCII characters (no spaces)".into())
        );
        let missing = PathBuf::from("/nonexistent/cert.pem");
        assert_eq!(
            load(&format!(
                "cert = \"{}\"\nkey = \"{}\"",
                missing.display(),
                missing.display()
            )),
            Err(format!(
                "job.toml:2: http → cert: cannot read `{0}`: No such file or directory (os error 2)\njob.toml:3: http → key: cannot read `{0}`: No such file or directory (os error 2)",
                missing.display()
            ))
        );
        assert_eq!(
            load("cert = \"cert.pem\""),
            Err("job.toml:1: http → key: `cert` needs `key` too (HTTPS needs both PEM files)".into())
        );
        assert_eq!(
            load("port = 70000"),
            Err("job.toml:2: http → port: must be 0 (any free port) to 65535, found 70000".into())
        );
        assert_eq!(
            load("port = -1"),
            Err("job.toml:2: http → port: must be 0 (any free port) to 65535, found -1".into())
        );
        let unknown = load("prot = 1").expect_err("refused");
        assert!(
            unknown.starts_with("job.toml:2:") && unknown.contains("prot"),
            "{unknown}"
        );
    }
}
