//! Where secret values come from besides the configuration file, and how a value that may hold a
//! secret is shown.

use std::path::{Path, PathBuf};

use secrecy::SecretString;

use super::ConfigError;

/// Where secret values may come from besides the config file itself.
#[derive(Debug, Clone, Default)]
pub struct SecretSource {
    /// systemd's `$CREDENTIALS_DIRECTORY` (`LoadCredential=`).
    pub credentials_dir: Option<PathBuf>,
}

impl SecretSource {
    pub fn from_env(env: &[(String, String)]) -> Self {
        let credentials_dir = env
            .iter()
            .find(|(k, _)| k == "CREDENTIALS_DIRECTORY")
            .map(|(_, v)| PathBuf::from(v));
        SecretSource { credentials_dir }
    }

    /// Resolves the secret `key` (e.g. `xero.client_secret`): the inline value, else the file named
    /// by `<key>_file`, else the systemd credential named `<key>` (e.g. `xero.client_secret`).
    /// File contents are trimmed of a trailing newline. The error names the file, never its text.
    pub fn resolve(
        &self,
        key: &str,
        inline: Option<SecretString>,
        file: Option<&Path>,
    ) -> Result<Option<SecretString>, ConfigError> {
        if let Some(s) = inline {
            return Ok(Some(s));
        }
        let read = |p: &Path, what: &str| -> Result<SecretString, ConfigError> {
            let text = std::fs::read_to_string(p).map_err(|e| {
                ConfigError::new(
                    what.to_string(),
                    format!("cannot read secret file {}: {}", p.display(), e.kind()),
                )
            })?;
            let value = text.trim_end_matches(['\n', '\r']).to_string();
            if value.is_empty() {
                return Err(ConfigError::new(
                    what.to_string(),
                    format!("secret file {} is empty", p.display()),
                ));
            }
            Ok(SecretString::from(value))
        };
        if let Some(p) = file {
            return read(p, &format!("{key}_file")).map(Some);
        }
        if let Some(dir) = &self.credentials_dir {
            let p = dir.join(key);
            if p.exists() {
                return read(&p, &format!("$CREDENTIALS_DIRECTORY/{key}")).map(Some);
            }
        }
        Ok(None)
    }
}

/// Shows a database URL without its password.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("REDACTED"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_password_is_redacted_in_errors() {
        assert_eq!(
            redact_url("postgres://u:hunter2@db/x"),
            "postgres://u:REDACTED@db/x"
        );
    }

    #[test]
    fn secrets_come_from_files_and_credentials() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("xero.client_secret"), "s3cret\n").unwrap();
        let src = SecretSource {
            credentials_dir: Some(dir.path().to_path_buf()),
        };
        let s = src
            .resolve("xero.client_secret", None, None)
            .unwrap()
            .unwrap();
        assert_eq!(secrecy::ExposeSecret::expose_secret(&s), "s3cret");
        let missing = src
            .resolve("x.y", None, Some(Path::new("/nonexistent/secret")))
            .unwrap_err();
        assert_eq!(missing.key, "x.y_file");
        assert!(
            src.resolve("autotask.secret", None, None)
                .unwrap()
                .is_none()
        );
    }
}
