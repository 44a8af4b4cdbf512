//! Which environment variables hold secrets: the cloud token, every service secret's variable
//! (`HOSTOMATIC_PROD_DB_PASSWORD`), each project-environment's Redis password, the SMTP
//! password and the SMS credentials the configs name. Natives that need a secret read it
//! themselves; a playbook's `env()` never sees one, so a script cannot print, log or store it.

use std::collections::HashSet;

use crate::config::Loaded;
use crate::template::secret_env_name;

/// The cloud's API token.
pub const CLOUD_TOKEN: &str = "DO_TOKEN";

/// Every variable the configs name as a secret source, and the cloud token.
pub fn secret_variables(loaded: Option<&Loaded>) -> HashSet<String> {
    let mut names: HashSet<String> = HashSet::from([CLOUD_TOKEN.to_string()]);
    let Some(loaded) = loaded else {
        return names;
    };
    for (project, deployment) in &loaded.deployment.projects {
        let environments = loaded
            .spec
            .projects
            .get(project)
            .map(|p| p.environments.clone())
            .unwrap_or_default();
        for environment in &environments {
            names.insert(secret_env_name(project, environment, "redis_password"));
            for service in deployment.services.values() {
                for secret in &service.secrets {
                    names.insert(secret_env_name(project, environment, secret));
                }
            }
        }
    }
    if let Some(smtp) = &loaded.email.smtp {
        names.extend(smtp.password_env.clone());
    }
    names.extend(loaded.sms.account_sid_env.clone());
    names.extend(loaded.sms.auth_token_env.clone());
    names
}

/// Whether `name` holds a secret.
pub fn is_secret(name: &str, loaded: Option<&Loaded>) -> bool {
    name == CLOUD_TOKEN || secret_variables(loaded).contains(name)
}
