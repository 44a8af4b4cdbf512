//! The registry images travel through. By default the master's (Debian's `docker-registry`,
//! listening on port 5000 of the master, which the fleet firewall opens to the fleet's droplets
//! only): this machine pushes through an SSH tunnel to it, and droplets pull from it directly.
//! A push sends only the layers the registry lacks (Docker asks for each one first). An outside
//! registry (`registry` in deployment_config.json) is pushed to and pulled from as it is.

use std::process::Command;
use std::time::Duration;

use super::DeployError;

/// The port the master's registry listens on.
pub const REGISTRY_PORT: u16 = 5000;

/// Where a project's images live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registry {
    /// The master's registry at this address (as the droplets reach it).
    Master { address: String },
    /// `registry.example.com/team`.
    Outside { prefix: String },
}

impl Registry {
    /// What droplets pull `repository@digest` as.
    pub fn pull_reference(&self, repository: &str, digest: &str) -> String {
        format!("{}/{repository}@{digest}", self.host_prefix())
    }

    /// `10.0.0.2:5000` or `registry.example.com/team`.
    pub fn host_prefix(&self) -> String {
        match self {
            Registry::Master { address } => format!("{address}:{REGISTRY_PORT}"),
            Registry::Outside { prefix } => prefix.clone(),
        }
    }
}

fn docker(args: &[&str], what: &str) -> Result<String, DeployError> {
    let output = Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| DeployError::Push {
            message: format!("cannot run docker ({e}); install docker.io"),
        })?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    Err(DeployError::Push {
        message: format!(
            "{what} failed:\n{}",
            lines[lines.len().saturating_sub(10)..].join("\n")
        ),
    })
}

/// Pushes the local image `local_tag` as `<prefix>/<repository>:<tag>` and returns its
/// manifest digest. `prefix` is `127.0.0.1:<tunnel port>` for the master's registry (Docker
/// trusts a loopback registry without TLS) or the outside registry's name.
pub fn push(
    local_tag: &str,
    prefix: &str,
    repository: &str,
    tag: &str,
) -> Result<String, DeployError> {
    let remote = format!("{prefix}/{repository}:{tag}");
    docker(&["tag", local_tag, &remote], "docker tag")?;
    let pushed = docker(
        &["push", &remote],
        &format!("docker push {repository}:{tag}"),
    );
    // The tunnel's port is new every run: its tag would only pile up.
    if prefix.starts_with("127.0.0.1:") {
        let _ = docker(&["rmi", "--no-prune", &remote], "docker rmi");
    }
    let output = pushed?;
    digest_in_push_output(&output).ok_or_else(|| DeployError::Push {
        message: format!("docker push of {repository}:{tag} printed no digest:\n{output}"),
    })
}

/// `<tag>: digest: sha256:... size: 1234`, the line `docker push` ends with.
fn digest_in_push_output(output: &str) -> Option<String> {
    output.lines().rev().find_map(|line| {
        let at = line.find("digest: ")?;
        let digest = line[at + 8..].split_whitespace().next()?;
        digest.starts_with("sha256:").then(|| digest.to_string())
    })
}

/// Media types a manifest may have; the registry answers with the one it stored.
const MANIFEST_TYPES: &str = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json";

/// Gives the manifest `digest` of `repository` another tag, without moving any layer: prod's
/// release is UAT's image under prod's name, the same digest. `base` is the registry's URL
/// (`http://127.0.0.1:<tunnel port>`).
pub async fn retag(
    base: &str,
    repository: &str,
    digest: &str,
    tag: &str,
) -> Result<(), DeployError> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| DeployError::Push {
            message: format!("cannot make an HTTP client: {e}"),
        })?;
    let failed = |what: &str, e: String| DeployError::Push {
        message: format!("{what} {repository}@{digest} in the registry: {e}"),
    };
    let got = client
        .get(format!("{base}/v2/{repository}/manifests/{digest}"))
        .header("Accept", MANIFEST_TYPES)
        .send()
        .await
        .map_err(|e| failed("cannot read", e.to_string()))?;
    if !got.status().is_success() {
        return Err(failed(
            "cannot read",
            format!(
                "HTTP {} (was the image pruned from the registry? deploy it again)",
                got.status()
            ),
        ));
    }
    let media_type = got
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/vnd.docker.distribution.manifest.v2+json")
        .to_string();
    let body = got
        .bytes()
        .await
        .map_err(|e| failed("cannot read", e.to_string()))?;
    let put = client
        .put(format!("{base}/v2/{repository}/manifests/{tag}"))
        .header("Content-Type", media_type)
        .body(body)
        .send()
        .await
        .map_err(|e| failed("cannot tag", e.to_string()))?;
    if !put.status().is_success() {
        return Err(failed("cannot tag", format!("HTTP {}", put.status())));
    }
    let stored = put
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .unwrap_or(digest);
    if stored != digest {
        return Err(failed(
            "cannot tag",
            format!("the registry stored it as {stored}, not the same digest"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_read_from_the_last_line_of_a_push() {
        let out = "The push refers to repository [127.0.0.1:4000/app]\n5f70bf18a086: Layer already exists\nuat-1: digest: sha256:0123abcd size: 1570\n";
        assert_eq!(
            digest_in_push_output(out).as_deref(),
            Some("sha256:0123abcd")
        );
        assert_eq!(digest_in_push_output("nothing"), None);
    }

    #[test]
    fn droplets_pull_by_digest_from_the_master() {
        let r = Registry::Master {
            address: "10.0.0.2".into(),
        };
        assert_eq!(
            r.pull_reference("shop-backend", "sha256:ab"),
            "10.0.0.2:5000/shop-backend@sha256:ab"
        );
        let o = Registry::Outside {
            prefix: "reg.example.com/team".into(),
        };
        assert_eq!(
            o.pull_reference("shop-backend", "sha256:ab"),
            "reg.example.com/team/shop-backend@sha256:ab"
        );
    }
}
