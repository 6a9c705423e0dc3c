//! Secrets and TLS files that rotate without a restart.
//!
//! The files named by `API_TOKEN_FILE`, `WTL_API_TOKEN_FILE`, `WTL_API_PASSWORD_FILE`,
//! `WTL_OAUTH_CLIENT_SECRET_FILE`, `REDIS_URL_FILE`, `WTL_CA_FILE`, `WTL_CLIENT_CERT_FILE` and
//! `WTL_CLIENT_KEY_FILE` are looked at every [`POLL`]: their metadata, following symlinks (a file
//! rewritten in place, replaced by a rename, or swapped through a `..data` symlink as Kubernetes
//! and Cloud Run secret volumes do, changes it), and every [`READ_EVERY`]th look their content
//! too (a Cloud Run secret volume fetches the latest version on each read, with no metadata
//! change). A change takes effect within 10 s:
//! - `API_TOKEN_FILE`: the token list is replaced (a request sees the old list or the new one;
//!   `old,new` keeps both valid during a switch);
//! - a WTL credential: the WTL client's credentials are rebuilt, dropping the cached OAuth token;
//! - a TLS file: a new HTTP client is built from the files as they are now; calls in flight finish
//!   on the old one;
//! - `REDIS_URL_FILE`: operations from then on use a connection to the new URL.
//!
//! A file that becomes unreadable, empty or unusable keeps the last good value in force and is
//! logged at ERROR once per change (never its content); it is taken as soon as it is good again.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use secrecy::SecretString;

use crate::config::{Settings, read_secret_file, split_list};
use crate::memory::Store;
use crate::wtl::{Rotated, WtlClient};

/// How often the files are looked at.
pub const POLL: Duration = Duration::from_secs(2);
/// Every this many looks, the content is read even when the metadata did not change.
const READ_EVERY: u32 = 4;

/// What a file holds, and so what its change replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Holds {
    ApiTokens,
    WtlApiToken,
    WtlPassword,
    WtlClientSecret,
    RedisUrl,
    /// One of the three WTL TLS files: the client is rebuilt from all three.
    WtlTls,
}

/// What was last seen of a file: its metadata and a digest of its content (or of the failure to
/// read it), so a change is acted on, and logged, once.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    stamp: Option<Stamp>,
    digest: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    inode: (u64, u64),
}

struct Watched {
    var: &'static str,
    path: PathBuf,
    holds: Holds,
    seen: Seen,
}

/// Everything a changed file can replace.
pub(crate) struct Rotation {
    files: Vec<Watched>,
    settings: Arc<Settings>,
    wtl: Arc<WtlClient>,
    memory: Arc<Store>,
}

impl Rotation {
    /// The files to watch (none when every secret is given inline).
    pub(crate) fn new(settings: Arc<Settings>, wtl: Arc<WtlClient>, memory: Arc<Store>) -> Self {
        let files = watched_files(&settings)
            .into_iter()
            .map(|(var, path, holds)| {
                let seen = look(&path);
                Watched { var, path, holds, seen }
            })
            .collect();
        Self {
            files,
            settings,
            wtl,
            memory,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Looks at the files every [`POLL`] until dropped (the task is aborted at shutdown).
    pub(crate) async fn run(mut self) {
        let mut ticks = tokio::time::interval(POLL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        let mut round: u32 = 0;
        loop {
            ticks.tick().await;
            round = round.wrapping_add(1);
            let read_all = round.is_multiple_of(READ_EVERY);
            // Small files, a few times a minute: read off the async workers all the same.
            self = match tokio::task::spawn_blocking(move || {
                self.check(read_all);
                self
            })
            .await
            {
                Ok(rotation) => rotation,
                Err(_) => return,
            };
        }
    }

    /// One look at every file; acts on each change.
    fn check(&mut self, read_all: bool) {
        for i in 0..self.files.len() {
            let file = &self.files[i];
            let stamp = stamp(&file.path);
            if !read_all && stamp == file.seen.stamp {
                continue;
            }
            let seen = look(&file.path);
            if seen.digest == file.seen.digest {
                self.files[i].seen = seen;
                continue;
            }
            let (var, holds, path) = (file.var, file.holds, file.path.clone());
            match self.apply(holds, &path) {
                Ok(()) => tracing::info!(variable = var, file = %path.display(), "rotated: the new value is in use"),
                Err(problem) => tracing::error!(
                    variable = var,
                    file = %path.display(),
                    error = %problem,
                    "the changed file cannot be used; the last good value stays in use"
                ),
            }
            self.files[i].seen = seen;
        }
    }

    /// Puts a file's new value in use.
    fn apply(&self, holds: Holds, path: &std::path::Path) -> Result<(), String> {
        if holds == Holds::WtlTls {
            return self.wtl.rotate(Rotated::TlsFiles).map_err(|e| e.to_string());
        }
        let value = read_secret_file(path)?;
        match holds {
            Holds::ApiTokens => {
                let tokens = crate::config::token_list(split_list(&value)).map_err(str::to_string)?;
                self.settings.server.api_tokens.replace(tokens);
                Ok(())
            }
            Holds::WtlApiToken => self.rotate_wtl(Rotated::ApiToken(SecretString::from(value))),
            Holds::WtlPassword => self.rotate_wtl(Rotated::Password(SecretString::from(value))),
            Holds::WtlClientSecret => self.rotate_wtl(Rotated::ClientSecret(SecretString::from(value))),
            Holds::RedisUrl => self.memory.rotate_url(SecretString::from(value)),
            Holds::WtlTls => Ok(()),
        }
    }

    fn rotate_wtl(&self, rotated: Rotated) -> Result<(), String> {
        self.wtl.rotate(rotated).map_err(|e| e.to_string())
    }
}

/// Every file to watch: the `_FILE` secrets and the TLS settings that name a file (inline PEM
/// has nothing to watch).
fn watched_files(settings: &Settings) -> Vec<(&'static str, PathBuf, Holds)> {
    let secrets = &settings.secret_files;
    let mut files: Vec<(&'static str, PathBuf, Holds)> = [
        ("API_TOKEN_FILE", &secrets.api_token, Holds::ApiTokens),
        ("WTL_API_TOKEN_FILE", &secrets.wtl_api_token, Holds::WtlApiToken),
        ("WTL_API_PASSWORD_FILE", &secrets.wtl_api_password, Holds::WtlPassword),
        (
            "WTL_OAUTH_CLIENT_SECRET_FILE",
            &secrets.wtl_oauth_client_secret,
            Holds::WtlClientSecret,
        ),
        ("REDIS_URL_FILE", &secrets.redis_url, Holds::RedisUrl),
    ]
    .into_iter()
    .filter_map(|(var, path, holds)| path.clone().map(|p| (var, p, holds)))
    .collect();
    let tls = &settings.wtl.tls;
    for (var, value) in [
        ("WTL_CA_FILE", &tls.ca_file),
        ("WTL_CLIENT_CERT_FILE", &tls.client_cert_file),
        ("WTL_CLIENT_KEY_FILE", &tls.client_key_file),
    ] {
        if let Some(path) = value.as_deref().filter(|v| !crate::wtl::tls::is_inline_pem(v)) {
            files.push((var, PathBuf::from(path), Holds::WtlTls));
        }
    }
    files
}

/// The file's metadata (following symlinks), or `None` when it cannot be read.
fn stamp(path: &std::path::Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        len: meta.len(),
        modified: meta.modified().ok(),
        #[cfg(unix)]
        inode: {
            use std::os::unix::fs::MetadataExt;
            (meta.dev(), meta.ino())
        },
    })
}

/// What the file is now: its metadata and a digest of its content, or of why it cannot be read
/// (so an unreadable file is reported once, not at every look).
fn look(path: &std::path::Path) -> Seen {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    match std::fs::read(path) {
        Ok(bytes) => bytes.hash(&mut hasher),
        Err(e) => format!("unreadable: {:?}", e.kind()).hash(&mut hasher),
    }
    Seen {
        stamp: stamp(path),
        digest: hasher.finish(),
    }
}
