//! The `_FILE` forms of the secret settings (`API_TOKEN_FILE`, `WTL_API_TOKEN_FILE`,
//! `WTL_API_PASSWORD_FILE`, `WTL_OAUTH_CLIENT_SECRET_FILE`, `REDIS_URL_FILE`): a file holding the
//! value, as Cloud Run secret volumes, Kubernetes and Docker secrets deliver them. Read here at
//! start-up (the value then goes through the same validation as the plain form); the files are
//! watched afterwards (`crate::rotation`), so a secret rotates without a restart.

use std::path::{Path, PathBuf};

use super::env::{Field, RawEnv, split_list};
use super::problems::Problems;

/// Where each secret read from a file lives, for the watcher.
#[derive(Clone, Debug, Default)]
pub(crate) struct SecretFiles {
    pub api_token: Option<PathBuf>,
    pub wtl_api_token: Option<PathBuf>,
    pub wtl_api_password: Option<PathBuf>,
    pub wtl_oauth_client_secret: Option<PathBuf>,
    pub redis_url: Option<PathBuf>,
}

/// A secret file's value: its text without surrounding white space (files usually end with a
/// line break). Never echoes the content.
pub(crate) fn read_secret_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{} cannot be read: {e}", path.display()))?;
    let value = text.trim();
    if value.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(value.to_string())
}

/// Replaces each `_FILE` form by the value it holds, so the validation pass sees one value per
/// secret; both forms at once, or a file that cannot be used, is a problem of the `_FILE` setting.
pub(super) fn resolve(p: &mut Problems, raw: &mut RawEnv) -> SecretFiles {
    let mut files = SecretFiles::default();
    let token_set = !matches!(raw.api_token, Field::Unset);
    if let Some((path, value)) = take(p, "API_TOKEN", token_set, raw.api_token_file.take()) {
        raw.api_token = Field::Set(split_list(&value));
        files.api_token = Some(path);
    }
    for (var, value, file, slot) in [
        (
            "WTL_API_TOKEN",
            &mut raw.wtl_api_token,
            raw.wtl_api_token_file.take(),
            &mut files.wtl_api_token,
        ),
        (
            "WTL_API_PASSWORD",
            &mut raw.wtl_api_password,
            raw.wtl_api_password_file.take(),
            &mut files.wtl_api_password,
        ),
        (
            "WTL_OAUTH_CLIENT_SECRET",
            &mut raw.wtl_oauth_client_secret,
            raw.wtl_oauth_client_secret_file.take(),
            &mut files.wtl_oauth_client_secret,
        ),
        (
            "REDIS_URL",
            &mut raw.redis_url,
            raw.redis_url_file.take(),
            &mut files.redis_url,
        ),
    ] {
        if let Some((path, text)) = take(p, var, value.is_some(), file) {
            *value = Some(text);
            *slot = Some(path);
        }
    }
    files
}

/// The path and value of `<var>_FILE`, when it is set and usable.
fn take(p: &mut Problems, var: &'static str, value_set: bool, file: Option<String>) -> Option<(PathBuf, String)> {
    let file_var = file_var_name(var);
    let path = PathBuf::from(file?.trim());
    if value_set {
        p.add(file_var, format!("set either {var} or {file_var}, not both"));
        return None;
    }
    match read_secret_file(&path) {
        Ok(value) => Some((path, value)),
        Err(problem) => {
            p.add(file_var, problem);
            None
        }
    }
}

/// `API_TOKEN` → `API_TOKEN_FILE`, as a name that lives as long as the program.
fn file_var_name(var: &str) -> &'static str {
    match var {
        "API_TOKEN" => "API_TOKEN_FILE",
        "WTL_API_TOKEN" => "WTL_API_TOKEN_FILE",
        "WTL_API_PASSWORD" => "WTL_API_PASSWORD_FILE",
        "WTL_OAUTH_CLIENT_SECRET" => "WTL_OAUTH_CLIENT_SECRET_FILE",
        "REDIS_URL" => "REDIS_URL_FILE",
        _ => "a _FILE setting",
    }
}
