//! Bad input, case by case: what the user did wrong, the exact message they get, the exit code,
//! and that nothing in the project changed. Read as a table of every mistake infra knows about.

use crate::harness::{Output, Test};

const STATE: &str = "config/infrastructure.json";
const DEPLOY: &str = "config/deployment_config.json";
const EMAIL: &str = "config/email_config.json";
const SMS: &str = "config/sms_config.json";

/// How a case changes the project `infra init` wrote before running infra.
#[derive(Clone, Copy)]
enum Setup {
    /// Replace the first occurrence of `.1` in file `.0` with `.2`.
    Edit(&'static str, &'static str, &'static str),
    /// Write a file.
    Write(&'static str, &'static str),
    /// Delete a file.
    Remove(&'static str),
    /// Write bytes that need not be text.
    WriteBytes(&'static str, &'static [u8]),
    /// Make a directory.
    Mkdir(&'static str),
    /// Make a symbolic link `.0` pointing at `.1`.
    Symlink(&'static str, &'static str),
}
use Setup::*;

struct Case {
    name: &'static str,
    setup: &'static [Setup],
    args: &'static [&'static str],
    code: i32,
    /// The whole of stderr.
    stderr: &'static str,
}

const fn case(
    name: &'static str,
    setup: &'static [Setup],
    args: &'static [&'static str],
    code: i32,
    stderr: &'static str,
) -> Case {
    Case {
        name,
        setup,
        args,
        code,
        stderr,
    }
}

const VALIDATE: &[&str] = &["validate"];

const CASES: &[Case] = &[
    // Broken JSON, one per config file: file, line and column.
    case(
        "state file: missing comma",
        &[Edit(STATE, "\"web_droplets\": 2,", "\"web_droplets\": 2")],
        VALIDATE,
        2,
        "error: config/infrastructure.json:16:9: invalid JSON: expected `,` or `}`\n\
         error: found 1 problem\n",
    ),
    case(
        "state file: ends too early",
        &[Write(STATE, "{\n  \"droplets\": {")],
        VALIDATE,
        2,
        "error: config/infrastructure.json:2:15: invalid JSON: EOF while parsing an object (the file ends too early: a missing `}` or `]`?)\n\
         error: found 1 problem\n",
    ),
    case(
        "state file: not an object",
        &[Write(STATE, "[]\n")],
        VALIDATE,
        2,
        "error: config/infrastructure.json: expected an object, found an array\n\
         error: found 1 problem\n",
    ),
    case(
        "state file: empty",
        &[Write(STATE, "")],
        VALIDATE,
        2,
        "error: config/infrastructure.json: the file is empty; it should hold a JSON object (`infra init --force` writes the default)\n\
         error: found 1 problem\n",
    ),
    case(
        "state file: missing",
        &[Remove(STATE)],
        &["status"],
        2,
        "error: config/infrastructure.json: not found; run `infra init` to create it, or pass `--config-dir DIR`\n",
    ),
    case(
        "deployment config: missing comma",
        &[Edit(DEPLOY, "\"branch\": \"main\",", "\"branch\": \"main\"")],
        VALIDATE,
        2,
        "error: config/deployment_config.json:6:7: invalid JSON: expected `,` or `}`\n\
         error: found 1 problem\n",
    ),
    case(
        "email config: missing comma",
        &[Edit(EMAIL, "\"enabled\": false,", "\"enabled\": false")],
        VALIDATE,
        2,
        "error: config/email_config.json:3:3: invalid JSON: expected `,` or `}`\n\
         error: found 1 problem\n",
    ),
    case(
        "sms config: missing comma",
        &[Edit(SMS, "\"enabled\": false,", "\"enabled\": false")],
        VALIDATE,
        2,
        "error: config/sms_config.json:3:3: invalid JSON: expected `,` or `}`\n\
         error: found 1 problem\n",
    ),
    // The spec: wrong types and values, by JSON path.
    case(
        "web_droplets negative",
        &[Edit(STATE, "\"web_droplets\": 2", "\"web_droplets\": -1")],
        VALIDATE,
        2,
        "error: config/infrastructure.json: infrastructure_spec.projects.hostomatic.web_droplets: expected a whole number from 1 to 100, found -1\n\
         error: found 1 problem\n",
    ),
    case(
        "web_droplets a string",
        &[Edit(STATE, "\"web_droplets\": 2", "\"web_droplets\": \"2\"")],
        VALIDATE,
        2,
        "error: config/infrastructure.json: infrastructure_spec.projects.hostomatic.web_droplets: expected a whole number from 1 to 100, found \"2\"\n\
         error: found 1 problem\n",
    ),
    case(
        "web_droplets a fraction",
        &[Edit(STATE, "\"web_droplets\": 2", "\"web_droplets\": 2.5")],
        VALIDATE,
        2,
        "error: config/infrastructure.json: infrastructure_spec.projects.hostomatic.web_droplets: expected a whole number from 1 to 100, found 2.5\n\
         error: found 1 problem\n",
    ),
    case(
        "web_droplets too many",
        &[Edit(STATE, "\"web_droplets\": 2", "\"web_droplets\": 101")],
        VALIDATE,
        2,
        "error: config/infrastructure.json: infrastructure_spec.projects.hostomatic.web_droplets: expected a whole number from 1 to 100, found 101\n\
         error: found 1 problem\n",
    ),
    case(
        "environments not a list",
        &[Edit(STATE, "\"environments\": [\"prod\", \"uat\"]", "\"environments\": \"prod\"")],
        VALIDATE,
        2,
        "error: config/infrastructure.json: infrastructure_spec.projects.hostomatic.environments: expected a list of strings like [\"prod\", \"uat\"], found \"prod\"\n\
         error: found 1 problem\n",
    ),
    case(
        "environments empty",
        &[Edit(STATE, "\"environments\": [\"prod\", \"uat\"]", "\"environments\": []")],
        VALIDATE,
        2,
        "error: config/infrastructure.json: infrastructure_spec.projects.hostomatic.environments: is empty; list at least one environment, like [\"prod\"]\n\
         error: found 1 problem\n",
    ),
    case(
        "environment listed twice",
        &[Edit(STATE, "\"environments\": [\"prod\", \"uat\"]", "\"environments\": [\"prod\", \"prod\"]")],
        VALIDATE,
        2,
        "error: config/infrastructure.json: infrastructure_spec.projects.hostomatic.environments[1]: `prod` is listed twice; list each once\n\
         error: found 1 problem\n",
    ),
    case(
        "environment name with capitals",
        &[Edit(STATE, "\"environments\": [\"prod\", \"uat\"]", "\"environments\": [\"Prod\", \"uat\"]")],
        VALIDATE,
        2,
        "error: config/infrastructure.json: infrastructure_spec.projects.hostomatic.environments[0]: `Prod` is not a valid environment name; use lowercase letters and digits, starting with a letter (at most 16), like \"prod\" or \"uat\"\n\
         error: found 1 problem\n",
    ),
    case(
        "invalid project name",
        &[
            Edit(STATE, "\"hostomatic\": {", "\"Hostomatic\": {"),
            Edit(DEPLOY, "\"hostomatic\": {", "\"Hostomatic\": {"),
        ],
        VALIDATE,
        2,
        "error: config/infrastructure.json: infrastructure_spec.projects.Hostomatic: `Hostomatic` is not a valid project name; use lowercase letters, digits and hyphens (at most 63, not starting or ending with a hyphen)\n\
         error: found 1 problem\n",
    ),
    case(
        "invalid droplet name",
        &[Edit(STATE, "\"master\": {", "\"master_1\": {")],
        VALIDATE,
        2,
        "error: config/infrastructure.json: infrastructure_spec.droplets.master_1: `master_1` is not a valid droplet name; use lowercase letters, digits and hyphens (at most 63, not starting or ending with a hyphen)\n\
         error: found 1 problem\n",
    ),
    case(
        "unknown droplet role",
        &[Edit(STATE, "\"role\": \"master\"", "\"role\": \"boss\"")],
        VALIDATE,
        2,
        "error: config/infrastructure.json: infrastructure_spec.droplets.master.role: expected one of \"master\", \"web\", found \"boss\"\n\
         error: found 1 problem\n",
    ),
    case(
        "droplet without a size",
        &[Edit(STATE, "\"size\": \"s-2vcpu-4gb\",", "")],
        VALIDATE,
        2,
        "error: config/infrastructure.json: infrastructure_spec.droplets.master.size: missing; add a string like \"s-2vcpu-4gb\"\n\
         error: found 1 problem\n",
    ),
    case(
        "two masters",
        &[Edit(
            STATE,
            "\"master\": {",
            "\"backup\": {\"size\": \"s-1vcpu-1gb\", \"region\": \"lon1\", \"role\": \"master\"},\n      \"master\": {",
        )],
        VALIDATE,
        2,
        "error: config/infrastructure.json: infrastructure_spec.droplets: 2 droplets have role \"master\" (`backup`, `master`); keep exactly one\n\
         error: found 1 problem\n",
    ),
    case(
        "droplet named like a project's web droplet",
        &[Edit(
            STATE,
            "\"master\": {",
            "\"hostomatic-web1\": {\"size\": \"s-1vcpu-1gb\", \"region\": \"lon1\", \"role\": \"web\"},\n      \"master\": {",
        )],
        VALIDATE,
        2,
        "error: config/infrastructure.json: infrastructure_spec.droplets.hostomatic-web1: `hostomatic-web1` is also the name of web droplet 1 of project `hostomatic`; rename this droplet\n\
         error: found 1 problem\n",
    ),
    // The runtime half of the state.
    case(
        "runtime droplet with a bad IP",
        &[Edit(
            STATE,
            "\"droplets\": {},",
            "\"droplets\": {\"master\": {\"ip\": \"10.0.0.300\", \"role\": \"master\"}},",
        )],
        VALIDATE,
        2,
        "error: config/infrastructure.json: droplets.master.ip: expected an IPv4 address like \"203.0.113.10\", found \"10.0.0.300\"\n\
         error: found 1 problem\n",
    ),
    case(
        "runtime service on an unknown droplet",
        &[Edit(
            STATE,
            "\"projects\": {},",
            "\"projects\": {\"hostomatic-prod\": {\"backend\": {\"port\": 8001, \"assigned_droplets\": [\"hostomatic-web1\"]}}},",
        )],
        VALIDATE,
        2,
        "error: config/infrastructure.json: projects.hostomatic-prod.backend.assigned_droplets[0]: unknown droplet `hostomatic-web1`; it is not under `droplets` (run `infra orchestrate` to repair the state)\n\
         error: found 1 problem\n",
    ),
    // deployment_config.json.
    case(
        "services for an unknown project",
        &[Edit(
            DEPLOY,
            "\"projects\": {",
            "\"projects\": {\n    \"nosuch\": {\"services\": {\"backend\": {\"containerfile_path\": \"b/Dockerfile\"}}},",
        )],
        VALIDATE,
        2,
        "error: config/deployment_config.json: projects.nosuch: services for unknown project `nosuch`; add it to infrastructure_spec.projects in config/infrastructure.json or remove this entry\n\
         error: found 1 problem\n",
    ),
    case(
        "worker without a command",
        &[Edit(DEPLOY, "\"command\": \"python email_processor.py\",", "")],
        VALIDATE,
        2,
        "error: config/deployment_config.json: projects.hostomatic.services.worker_email.command: missing; a worker needs a `command` (what its container runs), e.g. \"python email_processor.py\"\n\
         error: found 1 problem\n",
    ),
    case(
        "worker with a port",
        &[Edit(
            DEPLOY,
            "\"secrets\": [\"db_password\", \"sendgrid_api_key\"]",
            "\"secrets\": [\"db_password\", \"sendgrid_api_key\"], \"port\": 7000",
        )],
        VALIDATE,
        2,
        "error: config/deployment_config.json: projects.hostomatic.services.worker_email.port: a worker takes no traffic, so it has no port or route; remove this key or make the service \"type\": \"web\"\n\
         error: found 1 problem\n",
    ),
    case(
        "two services given the same port on one droplet",
        &[
            Edit(
                DEPLOY,
                "\"secrets\": [\"db_password\", \"stripe_key\"]",
                "\"secrets\": [\"db_password\", \"stripe_key\"], \"port\": {\"prod\": 8080, \"uat\": 8081}",
            ),
            Edit(
                DEPLOY,
                "\"secrets\": [\"stripe_publishable_key\"]",
                "\"secrets\": [\"stripe_publishable_key\"], \"port\": {\"prod\": 8080, \"uat\": 8082}",
            ),
        ],
        VALIDATE,
        2,
        "error: config/deployment_config.json: projects.hostomatic.services.frontend.port.prod: port 8080 on `hostomatic-web1` is given to both `hostomatic-prod-backend` and `hostomatic-prod-frontend`; give each service its own port on a droplet\n\
         error: found 1 problem\n",
    ),
    case(
        "one fixed port for two environments",
        &[Edit(
            DEPLOY,
            "\"secrets\": [\"db_password\", \"stripe_key\"]",
            "\"secrets\": [\"db_password\", \"stripe_key\"], \"port\": 8080",
        )],
        VALIDATE,
        2,
        "error: config/deployment_config.json: projects.hostomatic.services.backend.port: port 8080 on `hostomatic-web1` is given to both `hostomatic-prod-backend` and `hostomatic-uat-backend`; give each service its own port on a droplet (its environments share droplets: give one port per environment, like \"port\": {\"prod\": 8080, \"uat\": 8081})\n\
         error: found 1 problem\n",
    ),
    case(
        "service placed on a droplet the project does not have",
        &[Edit(
            DEPLOY,
            "\"secrets\": [\"db_password\", \"stripe_key\"]",
            "\"secrets\": [\"db_password\", \"stripe_key\"], \"droplets\": [\"hostomatic-web3\"]",
        )],
        VALIDATE,
        2,
        "error: config/deployment_config.json: projects.hostomatic.services.backend.droplets[0]: `hostomatic-web3` is not a web droplet of project `hostomatic` (it has `hostomatic-web1` to `hostomatic-web2`); name one of those\n\
         error: found 1 problem\n",
    ),
    case(
        "unknown platform",
        &[Edit(DEPLOY, "\"deployment_platform\": \"docker\"", "\"deployment_platform\": \"nomad\"")],
        VALIDATE,
        2,
        "error: config/deployment_config.json: deployment_platform: expected one of \"docker\", \"podman\", \"kubernetes\", found \"nomad\"\n\
         error: found 1 problem\n",
    ),
    case(
        "invalid service name",
        &[Edit(DEPLOY, "\"backend\": {", "\"Back-End\": {")],
        VALIDATE,
        2,
        "error: config/deployment_config.json: projects.hostomatic.services.Back-End: `Back-End` is not a valid service name; use lowercase letters, digits and underscores, starting with a letter (at most 40)\n\
         error: found 1 problem\n",
    ),
    case(
        "secrets not a list",
        &[Edit(DEPLOY, "\"secrets\": [\"db_password\", \"stripe_key\"]", "\"secrets\": \"db_password\"")],
        VALIDATE,
        2,
        "error: config/deployment_config.json: projects.hostomatic.services.backend.secrets: expected a list of strings like [\"db_password\"], found \"db_password\"\n\
         error: found 1 problem\n",
    ),
    case(
        "service without a containerfile",
        &[Edit(DEPLOY, "\"containerfile_path\": \"frontend/Dockerfile\",", "")],
        VALIDATE,
        2,
        "error: config/deployment_config.json: projects.hostomatic.services.frontend.containerfile_path: missing; add a string like \"backend/Dockerfile\"\n\
         error: found 1 problem\n",
    ),
    // email_config.json.
    case(
        "email recipient not an address",
        &[Edit(EMAIL, "[\"ops@example.com\"]", "[\"ops-at-example.com\"]")],
        VALIDATE,
        2,
        "error: config/email_config.json: recipients[0]: `ops-at-example.com` is not an email address; use one like \"ops@example.com\"\n\
         error: found 1 problem\n",
    ),
    case(
        "email sender not an address",
        &[Edit(EMAIL, "\"from\": \"infra@example.com\"", "\"from\": \"infra\"")],
        VALIDATE,
        2,
        "error: config/email_config.json: from: `infra` is not an email address; use one like \"ops@example.com\"\n\
         error: found 1 problem\n",
    ),
    case(
        "smtp port out of range",
        &[Edit(EMAIL, "\"port\": 587", "\"port\": 70000")],
        VALIDATE,
        2,
        "error: config/email_config.json: smtp.port: expected a whole number from 1 to 65535, found 70000\n\
         error: found 1 problem\n",
    ),
    case(
        "smtp security unknown",
        &[Edit(EMAIL, "\"security\": \"starttls\"", "\"security\": \"ssl\"")],
        VALIDATE,
        2,
        "error: config/email_config.json: smtp.security: expected one of \"starttls\", \"tls\", \"none\", found \"ssl\"\n\
         error: found 1 problem\n",
    ),
    case(
        "smtp password stored as a value",
        &[Edit(EMAIL, "\"password_env\": \"SMTP_PASSWORD\"", "\"password\": \"hunter2\"")],
        VALIDATE,
        2,
        "error: config/email_config.json: smtp.password: secrets are not stored in config files; put it in an environment variable and set `password_env` to that variable's name\n\
         error: found 1 problem\n",
    ),
    case(
        "smtp password_env not a variable name",
        &[Edit(EMAIL, "\"password_env\": \"SMTP_PASSWORD\"", "\"password_env\": \"smtp password\"")],
        VALIDATE,
        2,
        "error: config/email_config.json: smtp.password_env: `smtp password` is not an environment variable name; use upper-case letters, digits and underscores, like \"SMTP_PASSWORD\"\n\
         error: found 1 problem\n",
    ),
    case(
        "heartbeat interval zero",
        &[Edit(EMAIL, "\"interval_minutes\": 60", "\"interval_minutes\": 0")],
        VALIDATE,
        2,
        "error: config/email_config.json: heartbeat.interval_minutes: expected a whole number from 1 to 10080, found 0\n\
         error: found 1 problem\n",
    ),
    case(
        "email enabled not a boolean",
        &[Edit(EMAIL, "\"enabled\": false", "\"enabled\": \"yes\"")],
        VALIDATE,
        2,
        "error: config/email_config.json: enabled: expected true or false, found \"yes\"\n\
         error: found 1 problem\n",
    ),
    // sms_config.json.
    case(
        "sms recipient not in international form",
        &[Edit(SMS, "[\"+447700900123\"]", "[\"07700 900123\"]")],
        VALIDATE,
        2,
        "error: config/sms_config.json: recipients[0]: `07700 900123` is not a phone number in international form; use one like \"+447700900123\"\n\
         error: found 1 problem\n",
    ),
    case(
        "sms auth token stored as a value",
        &[Edit(SMS, "\"auth_token_env\": \"TWILIO_AUTH_TOKEN\"", "\"auth_token\": \"abc123secret\"")],
        VALIDATE,
        2,
        "error: config/sms_config.json: auth_token: secrets are not stored in config files; put it in an environment variable and set `auth_token_env` to that variable's name\n\
         error: found 1 problem\n",
    ),
    case(
        "sms provider unknown",
        &[Edit(SMS, "\"provider\": \"twilio\"", "\"provider\": \"carrier-pigeon\"")],
        VALIDATE,
        2,
        "error: config/sms_config.json: provider: expected one of \"twilio\", \"http\", found \"carrier-pigeon\"\n\
         error: found 1 problem\n",
    ),
    case(
        "sms api_url not http",
        &[Edit(SMS, "\"api_url\": \"https://api.twilio.com/2010-04-01\"", "\"api_url\": \"ftp://x\"")],
        VALIDATE,
        2,
        "error: config/sms_config.json: api_url: `ftp://x` is not an http(s) URL\n\
         error: found 1 problem\n",
    ),
    case(
        "sms enabled without a provider",
        &[Edit(SMS, "\"enabled\": false,\n  \"provider\": \"twilio\",", "\"enabled\": true,")],
        VALIDATE,
        2,
        "error: config/sms_config.json: provider: missing; SMS is enabled, so name the provider: \"twilio\" or \"http\"\n\
         error: found 1 problem\n",
    ),
    // Several problems in several files: all listed, in file order.
    case(
        "several problems at once",
        &[
            Edit(STATE, "\"web_droplets\": 1", "\"web_droplets\": 0"),
            Edit(DEPLOY, "\"command\": \"python cron_scheduler.py\",", ""),
            Edit(EMAIL, "\"security\": \"starttls\"", "\"security\": \"ssl\""),
            Edit(SMS, "\"enabled\": false,", "\"enabled\": false"),
        ],
        VALIDATE,
        2,
        "error: config/infrastructure.json: infrastructure_spec.projects.digitalpixo.web_droplets: expected a whole number from 1 to 100, found 0\n\
         error: config/deployment_config.json: projects.hostomatic.services.scheduler.command: missing; a worker needs a `command` (what its container runs), e.g. \"python email_processor.py\"\n\
         error: config/email_config.json: smtp.security: expected one of \"starttls\", \"tls\", \"none\", found \"ssl\"\n\
         error: config/sms_config.json:3:3: invalid JSON: expected `,` or `}`\n\
         error: found 4 problems\n",
    ),
    // A config problem met by a command that runs a playbook.
    case(
        "plan with a config problem",
        &[Edit(STATE, "\"web_droplets\": 2", "\"web_droplets\": \"2\"")],
        &["plan"],
        2,
        "error: config/infrastructure.json: infrastructure_spec.projects.hostomatic.web_droplets: expected a whole number from 1 to 100, found \"2\"\n",
    ),
    case(
        "plan with several config problems",
        &[
            Edit(STATE, "\"web_droplets\": 2", "\"web_droplets\": 0"),
            Edit(STATE, "\"web_droplet_spec\": \"s-1vcpu-1gb\"", "\"web_droplet_spec\": \"S_1\""),
        ],
        &["plan"],
        2,
        "error: config/infrastructure.json: infrastructure_spec.projects.hostomatic.web_droplets: expected a whole number from 1 to 100, found 0\n\
         error: config/infrastructure.json: infrastructure_spec.projects.digitalpixo.web_droplet_spec: `S_1` is not a valid droplet size; use a DigitalOcean slug like \"s-1vcpu-1gb\" (lowercase letters, digits and hyphens)\n",
    ),
    // Playbooks: syntax errors (2) with the source line and a caret; runtime errors (1).
    case(
        "playbook syntax error",
        &[Write("play.rhai", "let x = 1;\nlet y = \"a\" + ;\n")],
        &["run", "play.rhai"],
        2,
        "error: play.rhai:2:15: unexpected ';'\n  |\n2 | let y = \"a\" + ;\n  |               ^\n",
    ),
    case(
        "playbook missing semicolon",
        &[Write("play.rhai", "let x = 1\nlet y = 2;\n")],
        &["run", "play.rhai"],
        2,
        "error: play.rhai:2:1: expecting ';' to terminate this statement\n  |\n2 | let y = 2;\n  | ^\n",
    ),
    case(
        "playbook undefined variable",
        &[Write("play.rhai", "log(\"start\");\n\tlet x = nosuch;\n")],
        &["run", "play.rhai"],
        2,
        "error: play.rhai:2:10: undefined variable: nosuch\n  |\n2 | \tlet x = nosuch;\n  | \t        ^\n",
    ),
    case(
        "playbook uses eval",
        &[Write("play.rhai", "eval(\"1\");\n")],
        &["run", "play.rhai"],
        2,
        "error: play.rhai:1:1: reserved keyword 'eval' is disabled\n  |\n1 | eval(\"1\");\n  | ^\n",
    ),
    case(
        "playbook fails",
        &[Write("play.rhai", "let x = 1;\nfail(\"database is down\");\n")],
        &["run", "play.rhai"],
        1,
        "error: play.rhai:2:1: database is down\n  |\n2 | fail(\"database is down\");\n  | ^\n",
    ),
    case(
        "playbook fails inside a function",
        &[Write("play.rhai", "fn check() {\n    fail(\"deep\");\n}\n\ncheck();\n")],
        &["run", "play.rhai"],
        1,
        "error: play.rhai:2:5: deep\n  |\n2 |     fail(\"deep\");\n  |     ^\n",
    ),
    case(
        "playbook divides by zero",
        &[Write("play.rhai", "let x = 1 / 0;\n")],
        &["run", "play.rhai"],
        1,
        "error: play.rhai:1:11: division by zero: 1 / 0\n  |\n1 | let x = 1 / 0;\n  |           ^\n",
    ),
    case(
        "playbook assigns to ARGS",
        &[Write("play.rhai", "ARGS = [];\n")],
        &["run", "play.rhai"],
        1,
        "error: play.rhai:1:1: cannot modify constant ARGS\n  |\n1 | ARGS = [];\n  | ^\n",
    ),
    case(
        "playbook imports a missing module",
        &[Write("play.rhai", "log(\"start\");\nimport \"nosuch\" as n;\n")],
        &["run", "play.rhai"],
        2,
        "error: play.rhai:2:8: module `nosuch` not found; modules are imported from `stdlib/` by name, like `import \"args\" as args;`\n  |\n2 | import \"nosuch\" as n;\n  |        ^\n",
    ),
    case(
        "module with a syntax error",
        &[
            Write("stdlib/broken.rhai", "fn f( {\n"),
            Write("play.rhai", "import \"broken\" as b;\nb::f();\n"),
        ],
        &["run", "play.rhai"],
        2,
        "error: stdlib/broken.rhai:1:7: expecting ')' to close the parameters list of function 'f'\n  |\n1 | fn f( {\n  |       ^\n",
    ),
    case(
        "module fails at run time",
        &[
            Write("stdlib/lists.rhai", "fn sixth(list) {\n    list[5]\n}\n"),
            Write("play.rhai", "import \"lists\" as lists;\n\nlists::sixth([1]);\n"),
        ],
        &["run", "play.rhai"],
        1,
        "error: stdlib/lists.rhai:2:10: array index 5 out of bounds: only 1 element in array\n  |\n2 |     list[5]\n  |          ^\n",
    ),
    case(
        "run a missing playbook",
        &[],
        &["run", "nosuch.rhai"],
        2,
        "error: playbook `nosuch.rhai` not found; give a path to a .rhai file or the name of a bundled playbook (`infra init` writes them to playbooks/)\n",
    ),
    case(
        "run with a bare word after --",
        &[Write("play.rhai", "log(\"x\");\n")],
        &["run", "play.rhai", "--", "oops"],
        2,
        "error: unexpected `oops` after `--`; options there take the form `--key value` or `--flag`\n",
    ),
    // Issue 11: unknown keys in the objects infra defines, with the nearest known key.
    case(
        "spec: misspelt project key",
        &[Edit(
            STATE,
            "\"environments\": [\"prod\", \"uat\"],",
            "\"environments\": [\"prod\", \"uat\"],\n        \"enviroments\": [\"prod\"],",
        )],
        VALIDATE,
        2,
        "error: config/infrastructure.json: infrastructure_spec.projects.hostomatic.enviroments: unknown key `enviroments`; did you mean `environments`?\n\
         error: found 1 problem\n",
    ),
    case(
        "spec: misspelt top-level key",
        &[Edit(
            STATE,
            "\"infrastructure_spec\": {",
            "\"infrastructure_spec\": {\n    \"snapshot_retension\": 5,",
        )],
        VALIDATE,
        2,
        "error: config/infrastructure.json: infrastructure_spec.snapshot_retension: unknown key `snapshot_retension`; did you mean `snapshot_retention`?\n\
         error: found 1 problem\n",
    ),
    case(
        "spec: droplet key nothing like a known one",
        &[Edit(STATE, "\"role\": \"master\"", "\"role\": \"master\", \"colour\": \"blue\"")],
        VALIDATE,
        2,
        "error: config/infrastructure.json: infrastructure_spec.droplets.master.colour: unknown key `colour`; infra does not use it: remove it, or start a key of your own with `x-`\n\
         error: found 1 problem\n",
    ),
    case(
        "deployment config: misspelt top-level key",
        &[Edit(DEPLOY, "\"deployment_platform\":", "\"deployment_platfrom\":")],
        VALIDATE,
        2,
        "error: config/deployment_config.json: deployment_platfrom: unknown key `deployment_platfrom`; did you mean `deployment_platform`?\n\
         error: found 1 problem\n",
    ),
    case(
        "deployment config: misspelt project key",
        &[Edit(DEPLOY, "\"branch\": \"main\",", "\"brnach\": \"main\",")],
        VALIDATE,
        2,
        "error: config/deployment_config.json: projects.hostomatic.brnach: unknown key `brnach`; did you mean `branch`?\n\
         error: found 1 problem\n",
    ),
    case(
        "deployment config: misspelt service key",
        &[Edit(
            DEPLOY,
            "\"containerfile_path\": \"workers/Dockerfile\",",
            "\"containerfile_path\": \"workers/Dockerfile\",\n          \"helth_path\": \"/up\",",
        )],
        VALIDATE,
        2,
        "error: config/deployment_config.json: projects.hostomatic.services.worker_email.helth_path: unknown key `helth_path`; did you mean `health_path`?\n\
         error: found 1 problem\n",
    ),
    case(
        "email config: misspelt key",
        &[Edit(EMAIL, "\"recipients\":", "\"recipents\":")],
        VALIDATE,
        2,
        "error: config/email_config.json: recipents: unknown key `recipents`; did you mean `recipients`?\n\
         error: found 1 problem\n",
    ),
    case(
        "email config: misspelt smtp key",
        &[Edit(EMAIL, "\"username\":", "\"usrname\":")],
        VALIDATE,
        2,
        "error: config/email_config.json: smtp.usrname: unknown key `usrname`; did you mean `username`?\n\
         error: found 1 problem\n",
    ),
    case(
        "email config: unknown heartbeat key",
        &[Edit(EMAIL, "\"interval_minutes\": 60", "\"interval_minutes\": 60, \"every\": 5")],
        VALIDATE,
        2,
        "error: config/email_config.json: heartbeat.every: unknown key `every`; infra does not use it: remove it, or start a key of your own with `x-`\n\
         error: found 1 problem\n",
    ),
    case(
        "sms config: misspelt key",
        &[Edit(SMS, "\"auth_token_env\":", "\"auth_token_evn\":")],
        VALIDATE,
        2,
        "error: config/sms_config.json: auth_token_evn: unknown key `auth_token_evn`; did you mean `auth_token_env`?\n\
         error: found 1 problem\n",
    ),
    // Issue 11: sizes and regions checked against DigitalOcean's slugs (the bundled list: no
    // cloud is configured here).
    case(
        "unknown droplet size",
        &[Edit(STATE, "\"web_droplet_spec\": \"s-1vcpu-1gb\"", "\"web_droplet_spec\": \"s-999\"")],
        VALIDATE,
        2,
        "error: config/infrastructure.json: infrastructure_spec.projects.digitalpixo.web_droplet_spec: `s-999` is not a droplet size DigitalOcean offers; use one like `s-1vcpu-1gb` (`doctl compute size list` lists them all)\n\
         error: found 1 problem\n",
    ),
    case(
        "misspelt droplet size",
        &[Edit(STATE, "\"size\": \"s-2vcpu-4gb\"", "\"size\": \"s-2vcpu-4g\"")],
        VALIDATE,
        2,
        "error: config/infrastructure.json: infrastructure_spec.droplets.master.size: `s-2vcpu-4g` is not a droplet size DigitalOcean offers; did you mean `s-2vcpu-4gb`?\n\
         error: found 1 problem\n",
    ),
    case(
        "unknown region",
        &[Edit(STATE, "\"region\": \"lon1\"", "\"region\": \"lon2\"")],
        VALIDATE,
        2,
        "error: config/infrastructure.json: infrastructure_spec.droplets.master.region: `lon2` is not a region DigitalOcean offers; did you mean `lon1`?\n\
         error: found 1 problem\n",
    ),
    // Issue 11: a file that is there but cannot be read is never "not found".
    case(
        "playbook not UTF-8",
        &[WriteBytes("utf.rhai", b"log(\"caf\xe9\");\n")],
        &["run", "utf.rhai"],
        2,
        "error: playbook `utf.rhai` exists but is not UTF-8 text (the byte at offset 8, on line 1, is not valid UTF-8); save it as UTF-8\n",
    ),
    case(
        "playbook is a directory",
        &[Mkdir("dir.rhai")],
        &["run", "dir.rhai"],
        2,
        "error: playbook `dir.rhai` is a directory, not a file; give a playbook file (.rhai)\n",
    ),
    case(
        "playbook is a broken symbolic link",
        &[Symlink("link.rhai", "gone.rhai")],
        &["run", "link.rhai"],
        2,
        "error: playbook `link.rhai` is a symbolic link to `gone.rhai`, which does not exist; point it at a file or remove it\n",
    ),
    case(
        "playbook to watch not UTF-8",
        &[WriteBytes("utf.rhai", b"\xff")],
        &["run", "utf.rhai", "--watch"],
        2,
        "error: playbook `utf.rhai` exists but is not UTF-8 text (the byte at offset 0, on line 1, is not valid UTF-8); save it as UTF-8\n",
    ),
    case(
        "bundled playbook overridden by a file that is not UTF-8",
        &[WriteBytes("playbooks/scale.rhai", b"// scale\n\xff\n")],
        &["scale", "hostomatic", "3"],
        2,
        "error: playbook `playbooks/scale.rhai` exists but is not UTF-8 text (the byte at offset 9, on line 2, is not valid UTF-8); save it as UTF-8\n",
    ),
    case(
        "module not UTF-8",
        &[
            WriteBytes("stdlib/latin1.rhai", b"// caf\xe9\n"),
            Write("play.rhai", "import \"latin1\" as l;\n"),
        ],
        &["run", "play.rhai"],
        2,
        "error: module `latin1`: `stdlib/latin1.rhai` exists but is not UTF-8 text (the byte at offset 6, on line 1, is not valid UTF-8); save it as UTF-8\n",
    ),
    case(
        "template not UTF-8",
        &[WriteBytes("templates/vault/vault.hcl.j2", b"{# caf\xe9 #}\n")],
        &["render", "vault/vault.hcl.j2"],
        2,
        "error: templates/vault/vault.hcl.j2: invalid operation: template `templates/vault/vault.hcl.j2` exists but is not UTF-8 text (the byte at offset 6, on line 1, is not valid UTF-8); save it as UTF-8\n",
    ),
    case(
        "state file not UTF-8",
        &[WriteBytes(STATE, b"{\"droplets\": \"\xff\"}\n")],
        VALIDATE,
        2,
        "error: config/infrastructure.json: exists but is not UTF-8 text (the byte at offset 14, on line 1, is not valid UTF-8); save it as UTF-8\n\
         error: found 1 problem\n",
    ),
    case(
        "state file is a broken symbolic link",
        &[Remove(STATE), Symlink(STATE, "elsewhere.json")],
        &["status"],
        2,
        "error: config/infrastructure.json: is a symbolic link to `elsewhere.json`, which does not exist; point it at a file or remove it\n",
    ),
    case(
        "deployment config is a directory",
        &[Remove(DEPLOY), Mkdir(DEPLOY)],
        VALIDATE,
        2,
        "error: config/deployment_config.json: is a directory, not a file\n\
         error: found 1 problem\n",
    ),
    // Command-line arguments of the project commands.
    case(
        "add-project: invalid name",
        &[],
        &["add-project", "My_App", "prod", "1", "s-1vcpu-1gb"],
        2,
        "error: playbooks/add_project.rhai:13:1: `My_App` is not a valid project name; use lowercase letters, digits and hyphens (at most 63, not starting or ending with a hyphen)\n",
    ),
    case(
        "add-project: N not a number",
        &[],
        &["add-project", "shop", "prod", "two", "s-1vcpu-1gb"],
        2,
        "error: playbooks/add_project.rhai:10:19: N must be a whole number from 1 to 100, not \"two\"\n",
    ),
    case(
        "add-project: N zero",
        &[],
        &["add-project", "shop", "prod", "0", "s-1vcpu-1gb"],
        2,
        "error: playbooks/add_project.rhai:10:19: N must be a whole number from 1 to 100, not 0\n",
    ),
    case(
        "add-project: N too large",
        &[],
        &["add-project", "shop", "prod", "101", "s-1vcpu-1gb"],
        2,
        "error: playbooks/add_project.rhai:10:19: N must be a whole number from 1 to 100, not 101\n",
    ),
    case(
        "add-project: existing project",
        &[],
        &["add-project", "hostomatic", "prod", "1", "s-1vcpu-1gb"],
        2,
        "error: playbooks/add_project.rhai:13:1: project `hostomatic` already exists; use `infra scale hostomatic N` to change its droplets\n",
    ),
    case(
        "add-project: environment listed twice",
        &[],
        &["add-project", "shop", "prod,uat,prod", "1", "s-1vcpu-1gb"],
        2,
        "error: playbooks/add_project.rhai:13:1: environment `prod` is listed twice; list each once\n",
    ),
    case(
        "add-project: invalid environment",
        &[],
        &["add-project", "shop", "PROD", "1", "s-1vcpu-1gb"],
        2,
        "error: playbooks/add_project.rhai:13:1: `PROD` is not a valid environment name; use lowercase letters and digits, starting with a letter (at most 16), like \"prod\" or \"uat\"\n",
    ),
    case(
        "add-project: no environments",
        &[],
        &["add-project", "shop", ",", "1", "s-1vcpu-1gb"],
        2,
        "error: playbooks/add_project.rhai:13:1: no environments given; list them separated by commas, like prod,uat\n",
    ),
    case(
        "add-project: size with a space",
        &[],
        &["add-project", "shop", "prod", "1", "s 1vcpu"],
        2,
        "error: playbooks/add_project.rhai:13:1: `s 1vcpu` is not a valid droplet size; use a DigitalOcean slug like \"s-1vcpu-1gb\" (lowercase letters, digits and hyphens)\n",
    ),
    case(
        "add-project: missing arguments",
        &[],
        &["add-project", "shop"],
        2,
        "error: the following required arguments were not provided:\n  <ENVIRONMENTS>\n  <WEB_DROPLETS>\n  <SIZE>\n\nUsage: infra add-project <NAME> <ENVIRONMENTS> <WEB_DROPLETS> <SIZE>\n\nFor more information, try '--help'.\n",
    ),
    case(
        "scale: unknown project",
        &[],
        &["scale", "nosuch", "2"],
        2,
        "error: playbooks/scale.rhai:10:1: project `nosuch` is not in infrastructure_spec.projects; the spec has hostomatic, digitalpixo\n",
    ),
    case(
        "scale: N not a number",
        &[],
        &["scale", "hostomatic", "many"],
        2,
        "error: playbooks/scale.rhai:8:19: N must be a whole number from 1 to 100, not \"many\"\n",
    ),
    case(
        "scale: N out of range",
        &[],
        &["scale", "hostomatic", "0"],
        2,
        "error: playbooks/scale.rhai:8:19: N must be a whole number from 1 to 100, not 0\n",
    ),
    case(
        "remove-project: unknown project",
        &[],
        &["remove-project", "nosuch"],
        2,
        "error: playbooks/remove_project.rhai:9:1: project `nosuch` is not in infrastructure_spec.projects; the spec has hostomatic, digitalpixo\n",
    ),
    case(
        "discover: unknown project",
        &[],
        &["discover", "nosuch", "prod"],
        2,
        "error: project `nosuch` is not in the spec; known projects: hostomatic, digitalpixo\n",
    ),
    case(
        "discover: unknown environment",
        &[],
        &["discover", "hostomatic", "test"],
        2,
        "error: project `hostomatic` has no environment `test`; it has prod, uat\n",
    ),
    case(
        "lock timeout not a number",
        &[],
        &["--lock-timeout", "soon", "status"],
        2,
        "error: invalid value 'soon' for '--lock-timeout <SECONDS>': invalid digit found in string\n\nFor more information, try '--help'.\n",
    ),
];

/// Runs one case in a fresh `infra init` project; `Err` describes how it went wrong.
fn check(case: &Case) -> Result<(), String> {
    let test = Test::init();
    for step in case.setup {
        match *step {
            Edit(file, from, to) => {
                let text = test.read(file);
                if !text.contains(from) {
                    return Err(format!("setup: `{from}` is not in {file}"));
                }
                test.write(file, &text.replacen(from, to, 1));
            }
            Write(file, text) => test.write(file, text),
            Remove(file) => std::fs::remove_file(test.path().join(file)).unwrap(),
            WriteBytes(file, bytes) => std::fs::write(test.path().join(file), bytes).unwrap(),
            Mkdir(dir) => std::fs::create_dir_all(test.path().join(dir)).unwrap(),
            Symlink(link, target) => {
                std::os::unix::fs::symlink(target, test.path().join(link)).unwrap()
            }
        }
    }
    let before = test.snapshot();
    let out: Output = test.infra(case.args);
    let mut wrong = Vec::new();
    if out.code != case.code {
        wrong.push(format!("exit code {} (expected {})", out.code, case.code));
    }
    if out.stderr != case.stderr {
        wrong.push(format!(
            "stderr:\n{}\nexpected:\n{}",
            out.stderr, case.stderr
        ));
    }
    wrong.extend(before.changes(&test.snapshot()));
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "infra {}: {}",
            case.args.join(" "),
            wrong.join("\n")
        ))
    }
}

/// Runs the cases a few at a time and reports every failure together.
fn check_all(cases: Vec<&Case>) {
    const THREADS: usize = 4;
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let mine: Vec<&Case> = cases.iter().skip(t).step_by(THREADS).copied().collect();
                s.spawn(move || {
                    mine.into_iter()
                        .filter_map(|case| {
                            check(case).err().map(|e| format!("[{}] {e}", case.name))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("case thread"))
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn corpus_is_large_and_names_are_unique() {
    let mut names: Vec<&str> = CASES.iter().map(|c| c.name).collect();
    let total = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), total, "two cases share a name");
    assert!(CASES.len() >= 35);
}

#[test]
fn every_bad_input_gets_its_exact_message_and_changes_nothing() {
    check_all(CASES.iter().collect());
}

/// Issue 11: what is not bad input. Keys starting with `x-` are the user's own in every object
/// infra defines, the keys of free-form maps (`environment`, `domains`) are the user's to
/// choose, and a command that saves the spec keeps all of them where they were.
#[test]
fn user_keys_and_free_form_maps_are_accepted_and_kept_on_save() {
    let test = Test::init()
        .edit(
            STATE,
            "\"infrastructure_spec\": {",
            "\"infrastructure_spec\": {\n    \"x-team\": \"ops\",",
        )
        .edit(
            STATE,
            "\"web_droplets\": 2,",
            "\"x-note\": {\"why\": \"two for load\"},\n        \"web_droplets\": 2,",
        )
        .edit(STATE, "\"role\": \"master\"", "\"role\": \"master\", \"x-rack\": 1")
        .edit(
            DEPLOY,
            "\"branch\": \"main\",",
            "\"branch\": \"main\",\n      \"domains\": {\"prod\": \"example.com\"},\n      \"x-owner\": \"web team\",",
        )
        .edit(
            DEPLOY,
            "\"containerfile_path\": \"backend/Dockerfile\",",
            "\"containerfile_path\": \"backend/Dockerfile\",\n          \"environment\": {\"ENVIROMENT\": \"prod\", \"LOG_LEVEL\": \"info\"},\n          \"health_path\": \"/health\",\n          \"x-dashboard\": \"https://grafana.example.com\",",
        )
        .edit(EMAIL, "\"enabled\": false,", "\"enabled\": false,\n  \"x-comment\": \"off until the relay is set up\",")
        .edit(SMS, "\"enabled\": false,", "\"enabled\": false,\n  \"x-comment\": \"off\",");
    let out = test.infra(["validate"]);
    out.assert_code(0);
    assert_eq!(out.stderr, "");

    // A playbook that only saves the spec (`infra scale` would go on to orchestrate).
    test.write("save.rhai", "scale_project_spec(\"hostomatic\", 3);\n");
    test.infra(["run", "save.rhai"]).assert_code(0);
    let state = test.read(STATE);
    for kept in [
        "\"x-team\": \"ops\"",
        "\"x-note\": {\"why\": \"two for load\"}",
        "\"x-rack\": 1",
        "\"web_droplets\": 3",
    ] {
        assert!(
            state.contains(kept),
            "`{kept}` is not in the saved state:\n{state}"
        );
    }
}
