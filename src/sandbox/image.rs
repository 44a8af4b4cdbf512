//! The droplet image: built locally on first use (nothing can be pulled), cached by a hash of
//! its recipe.
//!
//! The recipe (`droplet_recipe.sh`) and the droplet's init (`droplet_init.sh`) are embedded in
//! the binary; the image is `infra-droplet:<first 12 hex of sha256(recipe, init)>`, so a
//! changed recipe builds a new image and an unchanged one is never built twice on a machine.
//! One build at a time per machine (a lock file in the temporary directory), so parallel
//! sandboxes wait for the first one's image instead of building their own.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::sandbox::backend::Docker;

pub const RECIPE: &str = include_str!("droplet_recipe.sh");
pub const INIT: &str = include_str!("droplet_init.sh");

const REPOSITORY: &str = "infra-droplet";

/// The mirror used when apt's configuration names none for bookworm.
const FALLBACK_MIRROR: &str = "http://deb.debian.org/debian";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{0}")]
    Docker(#[from] crate::sandbox::backend::DockerError),
    #[error(
        "building the droplet image needs `debootstrap` (apt-get install debootstrap) and root"
    )]
    NoDebootstrap,
    #[error("building the droplet image {tag} failed ({reason}); the last lines were:\n{tail}")]
    Build {
        tag: String,
        reason: String,
        tail: String,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

/// `infra-droplet:<hash>` for the embedded recipe.
pub fn tag() -> String {
    let mut hash = Sha256::new();
    hash.update(RECIPE.as_bytes());
    hash.update([0u8]);
    hash.update(INIT.as_bytes());
    let digest = hash.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{REPOSITORY}:{}", &hex[..12])
}

/// The Debian mirror apt is configured with (`INFRA_DEBIAN_MIRROR` wins).
pub fn mirror() -> String {
    if let Ok(url) = std::env::var("INFRA_DEBIAN_MIRROR") {
        if !url.trim().is_empty() {
            return url.trim().to_owned();
        }
    }
    let mut texts = Vec::new();
    if let Ok(text) = std::fs::read_to_string("/etc/apt/sources.list") {
        texts.push((false, text));
    }
    if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            let name = path.to_string_lossy().to_string();
            let deb822 = name.ends_with(".sources");
            if deb822 || name.ends_with(".list") {
                if let Ok(text) = std::fs::read_to_string(&path) {
                    texts.push((deb822, text));
                }
            }
        }
    }
    texts
        .iter()
        .find_map(|(deb822, text)| {
            if *deb822 {
                mirror_in_deb822(text)
            } else {
                mirror_in_list(text)
            }
        })
        .unwrap_or_else(|| FALLBACK_MIRROR.to_owned())
}

/// `deb [options] URL bookworm main` lines.
fn mirror_in_list(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace().peekable();
        if words.next()? != "deb" {
            return None;
        }
        if words.peek()?.starts_with('[') {
            // Options run until the word that ends with `]`.
            for word in words.by_ref() {
                if word.ends_with(']') {
                    break;
                }
            }
        }
        let url = words.next()?;
        (words.next()? == "bookworm").then(|| url.to_owned())
    })
}

/// deb822 stanzas: `Types: deb`, `URIs: ...`, `Suites: bookworm ...`.
fn mirror_in_deb822(text: &str) -> Option<String> {
    text.split("\n\n").find_map(|stanza| {
        let field = |name: &str| {
            stanza.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| value.trim().to_owned())
            })
        };
        let types = field("Types")?;
        let suites = field("Suites")?;
        let enabled = field("Enabled").is_none_or(|v| v != "no");
        (enabled
            && types.split_whitespace().any(|t| t == "deb")
            && suites.split_whitespace().any(|s| s == "bookworm"))
        .then(|| field("URIs"))?
        .and_then(|uris| uris.split_whitespace().next().map(str::to_owned))
    })
}

/// The droplet image's tag, after building it if this machine does not have it yet.
/// `progress` gets one line per step of a build.
pub async fn ensure(docker: &Docker, progress: &mut dyn FnMut(&str)) -> Result<String, ImageError> {
    let tag = tag();
    if docker.image_exists(&tag).await? {
        return Ok(tag);
    }
    let lock_path = std::env::temp_dir().join("infra-droplet-image.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| ImageError::Io {
            context: format!("cannot open {}", lock_path.display()),
            source,
        })?;
    if lock.try_lock().is_err() {
        progress("waiting for another infra process that is building the droplet image");
        let lock = lock.try_clone().map_err(|source| ImageError::Io {
            context: "cannot wait for the image lock".into(),
            source,
        })?;
        tokio::task::spawn_blocking(move || lock.lock())
            .await
            .map_err(|e| ImageError::Io {
                context: "cannot wait for the image lock".into(),
                source: std::io::Error::other(e),
            })?
            .map_err(|source| ImageError::Io {
                context: "cannot wait for the image lock".into(),
                source,
            })?;
    }
    // Built while this process waited.
    if docker.image_exists(&tag).await? {
        return Ok(tag);
    }
    let tag_for_build = tag.clone();
    let mut lines = Vec::new();
    // The build is a blocking child process; stream its lines back through a channel.
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<String>();
    let build = tokio::task::spawn_blocking(move || build(&tag_for_build, &sender));
    while let Some(line) = receiver.recv().await {
        lines.push(line.clone());
        progress(&line);
    }
    let result = build.await.map_err(|e| ImageError::Io {
        context: "the image build stopped".into(),
        source: std::io::Error::other(e),
    })?;
    drop(lock);
    result.map(|()| tag)
}

/// Runs the recipe in a scratch directory and removes the directory afterwards.
fn build(
    tag: &str,
    progress: &tokio::sync::mpsc::UnboundedSender<String>,
) -> Result<(), ImageError> {
    let have_debootstrap = [
        "/usr/sbin/debootstrap",
        "/sbin/debootstrap",
        "/usr/bin/debootstrap",
    ]
    .iter()
    .any(|p| Path::new(p).exists());
    if !have_debootstrap {
        return Err(ImageError::NoDebootstrap);
    }
    let workdir = std::env::temp_dir().join(format!("infra-droplet-build-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&workdir);
    std::fs::create_dir_all(&workdir).map_err(|source| ImageError::Io {
        context: format!("cannot create {}", workdir.display()),
        source,
    })?;
    let result = run_recipe(tag, &workdir, progress);
    let _ = std::fs::remove_dir_all(&workdir);
    result
}

fn run_recipe(
    tag: &str,
    workdir: &Path,
    progress: &tokio::sync::mpsc::UnboundedSender<String>,
) -> Result<(), ImageError> {
    let io = |context: &str| {
        let context = context.to_owned();
        move |source| ImageError::Io { context, source }
    };
    let recipe = workdir.join("droplet_recipe.sh");
    let init = workdir.join("droplet_init.sh");
    std::fs::write(&recipe, RECIPE).map_err(io("cannot write the recipe"))?;
    std::fs::write(&init, INIT).map_err(io("cannot write the droplet init"))?;
    let mirror = mirror();
    let started = Instant::now();
    let say = |line: String| {
        let _ = progress.send(format!("[{:>3}s] {line}", started.elapsed().as_secs()));
    };
    say(format!(
        "building the droplet image {tag} (once per machine; about two minutes)"
    ));
    let mut child = Command::new("sh")
        .arg(&recipe)
        .arg(workdir)
        .arg(&mirror)
        .arg(tag)
        .arg(&init)
        // One stream, in order: the recipe's own steps and debootstrap's `I:` lines.
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io("cannot run sh"))?;
    let stderr = child.stderr.take().expect("piped");
    let stderr_lines = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let stdout = child.stdout.take().expect("piped");
    let mut tail: Vec<String> = Vec::new();
    // debootstrap says `I: Retrieving curl...`, `I: Validating curl...`, `I: Unpacking ...`:
    // one progress line per phase, with how many packages the previous one went through.
    let mut phase: Option<(&str, &str)> = None;
    let mut count = 0usize;
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        tail.push(line.clone());
        if tail.len() > 30 {
            tail.remove(0);
        }
        if let Some(step) = line.strip_prefix("step: ") {
            say(step.to_owned());
            continue;
        }
        let Some(info) = line.strip_prefix("I: ") else {
            continue;
        };
        let next = match info.split_whitespace().next().unwrap_or("") {
            "Retrieving" | "Validating" => ("downloading packages", "downloaded"),
            "Extracting" => ("extracting the base packages", "extracted"),
            "Installing" => ("installing the core packages", "installed"),
            "Unpacking" => ("unpacking packages", "unpacked"),
            "Configuring" => ("configuring packages", "configured"),
            _ => continue,
        };
        if phase.map(|p| p.0) != Some(next.0) {
            match phase {
                Some((_, done)) if count > 1 => say(format!("  {} ({count} {done})", next.0)),
                _ => say(format!("  {}", next.0)),
            }
            phase = Some(next);
            count = 0;
        }
        if !info.starts_with("Validating") {
            count += 1;
        }
    }
    let status = child.wait().map_err(io("the recipe stopped"))?;
    let errors = stderr_lines.join().unwrap_or_default();
    if status.success() {
        say(format!("built {tag}"));
        return Ok(());
    }
    tail.extend(errors.iter().rev().take(15).rev().cloned());
    Err(ImageError::Build {
        tag: tag.to_owned(),
        reason: status.to_string(),
        tail: tail.join("\n"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tag_is_a_hash_of_the_recipe() {
        let tag = tag();
        let hash = tag.strip_prefix("infra-droplet:").unwrap();
        assert_eq!(hash.len(), 12);
        assert!(hash.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(tag, super::tag());
    }

    #[test]
    fn mirrors_are_read_from_both_apt_formats() {
        let deb822 = "Types: deb\n# a comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n";
        assert_eq!(
            mirror_in_deb822(deb822).as_deref(),
            Some("http://mirror.example/debian")
        );
        let list =
            "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main\n";
        assert_eq!(
            mirror_in_list(list).as_deref(),
            Some("http://m.example/debian")
        );
        assert_eq!(
            mirror_in_list("deb http://s.example/debian-security bookworm-security main"),
            None
        );
    }
}
