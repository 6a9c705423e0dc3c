//! What a URL looks like where it may be seen: in the start-up line, `check`, logs.

/// A URL with its `user:password@` replaced by `***@`, for showing.
pub(crate) fn hide_userinfo(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
            let _ = url.set_password(None);
            let _ = url.set_username("***");
            url.to_string()
        }
        Ok(_) => text.to_string(),
        Err(_) => "(not shown)".to_string(),
    }
}
