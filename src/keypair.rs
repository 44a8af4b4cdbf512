//! The infrastructure SSH key pair: ed25519, OpenSSH format, private key readable by its owner
//! only.

use std::path::Path;

use ssh_key::{Algorithm, LineEnding, PrivateKey};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot generate an ed25519 key: {0}")]
    Generate(ssh_key::Error),
    #[error("cannot write `{path}`: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// Writes a new key pair to `private` and `private.pub`; the comment names the project.
pub fn generate(private: &Path, comment: &str) -> Result<(), KeyError> {
    let mut key = PrivateKey::random(&mut rand_core::OsRng, Algorithm::Ed25519)
        .map_err(KeyError::Generate)?;
    key.set_comment(comment);
    let pem = key.to_openssh(LineEnding::LF).map_err(KeyError::Generate)?;
    let public = key.public_key().to_openssh().map_err(KeyError::Generate)?;
    let write = |path: &Path, text: &[u8], mode| {
        crate::atomic_file::write_with_mode(path, text, Some(mode)).map_err(|source| {
            KeyError::Write {
                path: path.display().to_string(),
                source,
            }
        })
    };
    if let Some(dir) = private.parent() {
        std::fs::create_dir_all(dir).map_err(|source| KeyError::Write {
            path: dir.display().to_string(),
            source,
        })?;
    }
    write(private, pem.as_bytes(), 0o600)?;
    write(
        &public_path(private),
        format!("{public}\n").as_bytes(),
        0o644,
    )?;
    Ok(())
}

pub fn public_path(private: &Path) -> std::path::PathBuf {
    let mut name = private.file_name().unwrap_or_default().to_os_string();
    name.push(".pub");
    private.with_file_name(name)
}
