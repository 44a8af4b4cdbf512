//! Images are built on the machine infra runs on, one per service, with the local Docker
//! Engine: `docker build -f <containerfile_path> <context>`, the context being the repository
//! root or the service's `context` directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::DeployError;

/// What to build for one service.
#[derive(Debug, Clone)]
pub struct BuildSpec {
    pub service: String,
    pub containerfile: PathBuf,
    pub context: PathBuf,
    /// The local tag: `<repository>:<release>`.
    pub tag: String,
    pub labels: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct Built {
    /// The local image id (`sha256:...`).
    pub image_id: String,
    pub took: Duration,
}

/// Where the service's containerfile and build context are inside the source tree; a missing
/// file is named with the config key that points at it.
pub fn locate(
    source: &Path,
    service: &str,
    containerfile_path: &str,
    context: Option<&str>,
) -> Result<(PathBuf, PathBuf), DeployError> {
    let containerfile = source.join(containerfile_path);
    if !containerfile.is_file() {
        return Err(DeployError::Build {
            service: service.to_string(),
            message: format!(
                "its containerfile_path `{containerfile_path}` is not a file in {}; fix the path in deployment_config.json or add the file",
                source.display()
            ),
        });
    }
    let context_dir = match context {
        Some(dir) => source.join(dir),
        None => source.to_path_buf(),
    };
    if !context_dir.is_dir() {
        return Err(DeployError::Build {
            service: service.to_string(),
            message: format!(
                "its build context `{}` is not a directory in {}",
                context.unwrap_or("."),
                source.display()
            ),
        });
    }
    Ok((containerfile, context_dir))
}

/// Builds one image; a failed build says the last lines Docker printed.
pub fn build(spec: &BuildSpec) -> Result<Built, DeployError> {
    let started = Instant::now();
    let mut command = Command::new("docker");
    command
        .arg("build")
        .arg("--quiet")
        .arg("--file")
        .arg(&spec.containerfile)
        .arg("--tag")
        .arg(&spec.tag);
    for (key, value) in &spec.labels {
        command.arg("--label").arg(format!("{key}={value}"));
    }
    command.arg(&spec.context);
    let output = command.output().map_err(|e| DeployError::Build {
        service: spec.service.clone(),
        message: format!("cannot run docker ({e}); images are built with the local Docker Engine: install docker.io"),
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let text = format!("{stdout}{stderr}");
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        return Err(DeployError::Build {
            service: spec.service.clone(),
            message: format!("docker build failed:\n{tail}"),
        });
    }
    let image_id = String::from_utf8_lossy(&output.stdout).trim().to_string();
    Ok(Built {
        image_id,
        took: started.elapsed(),
    })
}
