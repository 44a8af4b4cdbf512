//! The `kubernetes` platform: a project-environment is a namespace; each service a Deployment
//! (web services also a Service) rendered from templates/kubernetes/, and a Secret made from
//! the service's env file. All of it goes to `kubectl apply` on the context named by
//! `kubernetes_context` in deployment_config.json; Kubernetes rolls the Deployments (readiness
//! probes on `health_path` gate the new pods) and `kubectl rollout status` waits for them.
//! Images come from an outside registry: a cluster cannot reach the master's.

use indexmap::IndexMap;
use serde_json::json;

use crate::template::{KubernetesContext, Templates};

#[derive(Debug, thiserror::Error)]
pub enum KubernetesError {
    #[error("project `{project}` deploys to Kubernetes, but no cluster is configured: set \"kubernetes_context\" in deployment_config.json (for the project or at the top) to a context of your kubeconfig (`kubectl config get-contexts` lists them)")]
    NoCluster { project: String },
    #[error("project `{project}` deploys to Kubernetes, whose nodes cannot reach the master's registry: set \"registry\" in deployment_config.json to a registry the cluster pulls from (e.g. \"registry.example.com/team\") and `docker login` to it here")]
    NoRegistry { project: String },
    #[error("{0}")]
    Template(String),
}

/// The command line that applies manifests (given on standard input) to `context`.
pub fn apply_command(context: &str) -> Vec<String> {
    ["kubectl", "--context", context, "apply", "--filename", "-"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// The command line that waits for one Deployment's rollout.
pub fn rollout_status_command(
    context: &str,
    namespace: &str,
    deployment: &str,
    timeout_seconds: u64,
) -> Vec<String> {
    vec![
        "kubectl".into(),
        "--context".into(),
        context.into(),
        "--namespace".into(),
        namespace.into(),
        "rollout".into(),
        "status".into(),
        format!("deployment/{deployment}"),
        format!("--timeout={timeout_seconds}s"),
    ]
}

/// A Secret holding one service's env file as variables. It carries secret values: it goes to
/// `kubectl` on standard input and is never printed or logged.
pub fn secret_manifest(
    namespace: &str,
    name: &str,
    variables: &IndexMap<String, String>,
) -> String {
    let manifest = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "infra"},
        },
        "type": "Opaque",
        "stringData": variables,
    });
    // JSON is YAML.
    format!("---\n{manifest}\n")
}

/// The namespace, Deployments and Services of a project-environment (no Secrets): what
/// `--dry-run` shows and what is validated. `images` maps each service to the reference the
/// cluster pulls.
pub fn manifests(
    templates: &Templates,
    mut context: KubernetesContext,
    images: &IndexMap<String, String>,
) -> Result<String, KubernetesError> {
    for service in &mut context.services {
        if let Some(image) = images.get(&service.name) {
            service.image = image.clone();
        }
    }
    let mut out = String::new();
    for name in [
        "kubernetes/namespace.yaml.j2",
        "kubernetes/deployment.yaml.j2",
        "kubernetes/service.yaml.j2",
    ] {
        let text = templates
            .render(name, &context)
            .map_err(|e| KubernetesError::Template(e.to_string()))?;
        if !text.trim_start().starts_with("---") {
            out.push_str("---\n");
        }
        out.push_str(&text);
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_is_told_the_context_and_reads_manifests_from_stdin() {
        assert_eq!(
            apply_command("prod-cluster").join(" "),
            "kubectl --context prod-cluster apply --filename -"
        );
        assert_eq!(
            rollout_status_command("c", "shop-prod", "worker-email", 30).join(" "),
            "kubectl --context c --namespace shop-prod rollout status deployment/worker-email --timeout=30s"
        );
    }

    #[test]
    fn a_secret_is_one_json_document() {
        let mut vars = IndexMap::new();
        vars.insert("DB_PASSWORD".to_string(), "p\"w".to_string());
        let text = secret_manifest("shop-prod", "backend-env", &vars);
        let doc: serde_json::Value =
            serde_json::from_str(text.trim_start_matches("---\n")).unwrap();
        assert_eq!(doc["stringData"]["DB_PASSWORD"], "p\"w");
        assert_eq!(doc["metadata"]["namespace"], "shop-prod");
    }
}
