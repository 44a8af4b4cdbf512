//! Where a project's client sends its requests when it has no `DO_TOKEN` of its own: the
//! project's sandbox cloud, if `infra sandbox up` started one.
//!
//! The sandbox writes these files under `config/.infra/sandbox/`; this module only reads them,
//! so the cloud side needs nothing from the sandbox's code:
//! - `env`: `DO_API_URL=https://127.0.0.1:<port>` and `DO_TOKEN=...`, one a line;
//! - `ca.pem`: the certificate authority that signs the sandbox server's certificate.
//!
//! The sandbox's CA is trusted by one client only: the one whose base URL is that sandbox's
//! URL, and that client trusts nothing else (see [`Client::trusting`]). Every other client
//! keeps the platform's roots and never sees the sandbox's CA.

use std::path::{Path, PathBuf};

use reqwest::Url;

use crate::cloud::client::Client;
use crate::cloud::error::CloudError;
use crate::cloud::retry_policy::RetryPolicy;
use crate::cloud::token::Token;
use crate::project::Project;

/// `config/.infra/sandbox/`: the project's sandbox keeps its files here.
pub fn sandbox_dir(project: &Project) -> PathBuf {
    project.infra_dir().join("sandbox")
}

/// The file of `DO_API_URL=...` and `DO_TOKEN=...` lines, within [`sandbox_dir`].
pub const ENV_FILE: &str = "env";

/// The line of the `env` file that tells where droplets reach the sandbox (its network's
/// gateway): what the monitors on sandbox droplets use as their `DO_API_URL`.
pub const DROPLET_URL_VARIABLE: &str = "DO_API_URL_FROM_DROPLETS";

/// The sandbox's CA certificate (PEM), within [`sandbox_dir`].
pub const CA_FILE: &str = "ca.pem";

/// How to reach the project's running sandbox.
#[derive(Debug, Clone)]
pub struct SandboxEndpoint {
    pub url: String,
    /// Where the sandbox's droplets reach it, when it serves them too.
    pub droplet_url: Option<String>,
    pub token: Token,
    /// The CA that signs the server's certificate, when the sandbox serves HTTPS.
    pub ca: Option<PathBuf>,
}

impl SandboxEndpoint {
    /// The project's sandbox, from its `env` file; `None` when no sandbox was started here.
    pub fn find(project: &Project) -> Option<SandboxEndpoint> {
        let dir = sandbox_dir(project);
        let text = std::fs::read_to_string(dir.join(ENV_FILE)).ok()?;
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix('=').map(str::to_owned))
        };
        let ca = dir.join(CA_FILE);
        Some(SandboxEndpoint {
            url: value("DO_API_URL")?,
            droplet_url: value(DROPLET_URL_VARIABLE),
            token: Token::new(value("DO_TOKEN")?).ok()?,
            ca: ca.is_file().then_some(ca),
        })
    }

    /// Whether `url` is this sandbox's (same scheme, host and port).
    pub fn serves(&self, url: &str) -> bool {
        match (Url::parse(&self.url), Url::parse(url.trim())) {
            (Ok(ours), Ok(theirs)) => ours.origin() == theirs.origin(),
            _ => false,
        }
    }

    /// A client for this sandbox that trusts its CA, and only its CA.
    pub fn client(&self, retry: RetryPolicy) -> Result<Client, CloudError> {
        self.client_for(&self.url, self.token.clone(), retry)
    }

    /// A client for `url` with `token`: trusting this sandbox's CA when `url` is this sandbox,
    /// an ordinary client otherwise.
    pub(crate) fn client_for(
        &self,
        url: &str,
        token: Token,
        retry: RetryPolicy,
    ) -> Result<Client, CloudError> {
        match &self.ca {
            Some(ca) if self.serves(url) => Client::trusting(url, token, retry, &read_ca(ca)?),
            _ => Client::new(url, token, retry),
        }
    }
}

fn read_ca(path: &Path) -> Result<Vec<u8>, CloudError> {
    std::fs::read(path).map_err(|e| CloudError::HttpSetup {
        cause: format!(
            "cannot read the sandbox's CA certificate {}: {e} (`infra sandbox down` then `infra sandbox up` makes a new one)",
            path.display()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(dir: &Path, env: &str) -> Project {
        let project = Project::new(dir, Path::new("config"));
        let sandbox = sandbox_dir(&project);
        std::fs::create_dir_all(&sandbox).unwrap();
        std::fs::write(sandbox.join(ENV_FILE), env).unwrap();
        project
    }

    #[test]
    fn finds_the_sandbox_from_its_env_file() {
        let dir = tempfile::tempdir().unwrap();
        let project = project(
            dir.path(),
            "DO_API_URL=https://127.0.0.1:4443\nDO_TOKEN=dop_v1_abc\n",
        );
        let found = SandboxEndpoint::find(&project).unwrap();
        assert_eq!(found.url, "https://127.0.0.1:4443");
        assert_eq!(found.ca, None);
        assert!(found.serves("https://127.0.0.1:4443/"));
        assert!(!found.serves("https://127.0.0.1:4444"));
        assert!(!found.serves("http://127.0.0.1:4443"));
        assert!(!found.serves("https://api.digitalocean.com"));
        assert!(!format!("{found:?}").contains("dop_v1_abc"));

        let none = tempfile::tempdir().unwrap();
        assert!(SandboxEndpoint::find(&Project::new(none.path(), Path::new("config"))).is_none());
    }

    #[test]
    fn an_unreadable_ca_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let project = project(
            dir.path(),
            "DO_API_URL=https://127.0.0.1:4443\nDO_TOKEN=t\n",
        );
        let endpoint = SandboxEndpoint {
            ca: Some(sandbox_dir(&project).join("missing.pem")),
            ..SandboxEndpoint::find(&project).unwrap()
        };
        let error = endpoint.client(RetryPolicy::default()).unwrap_err();
        assert!(error.to_string().contains("missing.pem"), "{error}");
        // Another endpoint never reads it.
        endpoint
            .client_for(
                "https://api.digitalocean.com",
                Token::new("t").unwrap(),
                RetryPolicy::default(),
            )
            .unwrap();
    }
}
