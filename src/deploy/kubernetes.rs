//! A release on the `kubernetes` platform: the namespace, Deployments, Services and one Secret
//! per service (its env file: environment, secrets, INFRA_*) applied with `kubectl` to the
//! configured context, then each Deployment's rollout waited for. Kubernetes rolls the pods
//! (the readiness probe on `health_path` is the gate); nginx on the master is not involved.

use std::io::Write;
use std::process::{Command, Stdio};

use indexmap::IndexMap;
use serde_json::{json, Value};

use super::{DeployError, Deployer};
use crate::platform::kubernetes::{
    apply_command, manifests, rollout_status_command, secret_manifest, KubernetesError,
};
use crate::report::Change;

fn kubectl(words: &[String], stdin: Option<&[u8]>) -> Result<String, DeployError> {
    let mut child = Command::new(&words[0])
        .args(&words[1..])
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            DeployError::Input(format!(
                "cannot run kubectl ({e}); install it and make sure `kubectl config get-contexts` lists the configured context"
            ))
        })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input)
            .map_err(|e| DeployError::Input(format!("kubectl: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| DeployError::Input(format!("kubectl: {e}")))?;
    if !out.status.success() {
        return Err(DeployError::Droplet {
            droplet: "kubernetes".into(),
            message: format!(
                "`{}` failed: {}",
                words.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Deployer {
    /// The manifests of `release` without Secrets (what a dry run shows), and the context.
    pub fn kubernetes_plan(
        &self,
        release: &super::ReleaseRecord,
    ) -> Result<(String, String), DeployError> {
        let context = self
            .loaded
            .deployment
            .kubernetes_context_of(&self.name)
            .ok_or_else(|| KubernetesError::NoCluster {
                project: self.name.clone(),
            })?;
        let images: IndexMap<String, String> = release
            .images
            .iter()
            .map(|(s, i)| {
                (
                    s.clone(),
                    self.registry.pull_reference(&i.repository, &i.digest),
                )
            })
            .collect();
        let k = crate::template::kubernetes_context(
            &self.loaded,
            &self.name,
            &self.environment,
            &release.name,
        )?;
        Ok((manifests(&self.templates, k, &images)?, context))
    }

    pub async fn deploy_kubernetes(
        &self,
        release: &super::ReleaseRecord,
    ) -> Result<(), DeployError> {
        let (manifests, context) = self.kubernetes_plan(release)?;
        let change = Change::new(
            "kubectl_apply",
            &self.project_env,
            Value::Null,
            json!({"context": context, "release": release.name}),
        );
        if self.dry_run {
            self.reporter.would(
                &change,
                &format!(
                    "`{}` these manifests (and one Secret per service, not shown):\n{}",
                    apply_command(&context).join(" "),
                    manifests.trim_end()
                ),
            );
            return Ok(());
        }
        let secrets = self.secrets()?;
        let mut input = manifests.clone();
        let namespace = self.project_env.clone();
        let mut seen = std::collections::HashSet::new();
        for target in self.targets()? {
            if !seen.insert(target.service.clone()) {
                continue;
            }
            let empty = IndexMap::new();
            let values = secrets.get(&target.service).unwrap_or(&empty);
            let env = self.env_context(&target, &release.name, values)?;
            let mut variables = env.variables.clone();
            variables.shift_remove("INFRA_DROPLET");
            for (k, v) in &env.secrets {
                variables.insert(k.clone(), v.expose().to_string());
            }
            let name = format!("{}-env", target.service.replace('_', "-"));
            input.push_str(&secret_manifest(&namespace, &name, &variables));
        }
        kubectl(&apply_command(&context), Some(input.as_bytes()))
            .inspect_err(|e| self.reporter.failed(&change, &e.to_string()))?;
        self.reporter
            .done(&change, &format!("applied {} to {context}", release.name));
        for service in seen {
            let deployment = service.replace('_', "-");
            let timeout = self
                .deployment
                .services
                .get(&service)
                .map_or(crate::config::deployment::DEFAULT_HEALTH_TIMEOUT, |c| {
                    c.health_timeout()
                })
                + 60;
            kubectl(
                &rollout_status_command(&context, &namespace, &deployment, timeout),
                None,
            )?;
        }
        Ok(())
    }
}
