//! The browser page: files from `web/`, built into the binary.
//!
//! The copy built in at compile time means the binary serves its page from
//! anywhere; `--web-dir` serves the files from disk instead, for working on
//! the page without rebuilding. Either way a request path is a plain file
//! name: anything that could climb out of the directory is refused before
//! any look-up.

use std::borrow::Cow;
use std::path::Path;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use rust_embed::Embed;

/// The page's files, embedded at build time.
#[derive(Embed)]
#[folder = "web/"]
struct Assets;

/// What the page may load: only its own scripts, styles and WebSocket, so
/// even a message that slipped into the page as HTML could run nothing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// A file found for a request.
struct File {
    body: Cow<'static, [u8]>,
    mime: &'static str,
    /// A strong validator when the file is the built-in copy.
    etag: Option<String>,
}

/// Serves `path` (as requested, with its leading `/`).
pub(crate) fn serve(
    path: &str,
    headers: &HeaderMap,
    web_dir: Option<&Path>,
) -> Response<Full<Bytes>> {
    let Some(name) = file_name(path) else {
        return plain(StatusCode::BAD_REQUEST, "bad path\n");
    };
    let file = match web_dir {
        Some(dir) => from_disk(dir, &name),
        None => embedded(&name),
    };
    let Some(file) = file else {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    };
    let not_modified = match (&file.etag, headers.get(header::IF_NONE_MATCH)) {
        (Some(etag), Some(wanted)) => wanted.as_bytes() == etag.as_bytes(),
        _ => false,
    };
    let mut response = Response::builder()
        .header(header::CONTENT_TYPE, file.mime)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::REFERRER_POLICY, "no-referrer")
        // Revalidate every time: the files are small and not fingerprinted,
        // and a new binary must never be paired with an old cached script.
        .header(
            header::CACHE_CONTROL,
            if file.etag.is_some() {
                "no-cache"
            } else {
                "no-store"
            },
        );
    if let Some(etag) = &file.etag {
        response = response.header(header::ETAG, etag);
    }
    if file.mime.starts_with("text/html") {
        response = response.header(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY);
    }
    let (status, body) = if not_modified {
        (StatusCode::NOT_MODIFIED, Bytes::new())
    } else {
        (StatusCode::OK, Bytes::from(file.body.into_owned()))
    };
    response
        .status(status)
        .body(Full::new(body))
        .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "error\n"))
}

/// The file a path names, or `None` if the path is not a plain relative
/// file path: no `..` or `.` segments, no empty segments, no backslashes,
/// no percent-escapes that could hide either.
fn file_name(path: &str) -> Option<String> {
    let rel = path.strip_prefix('/')?;
    if rel.is_empty() {
        return Some("index.html".to_owned());
    }
    let plain = rel.split('/').all(|seg| {
        !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    });
    plain.then(|| rel.to_owned())
}

fn embedded(name: &str) -> Option<File> {
    let file = Assets::get(name)?;
    let hash: String = file.metadata.sha256_hash()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Some(File {
        mime: content_type(name),
        etag: Some(format!("\"{hash}\"")),
        body: file.data,
    })
}

fn from_disk(dir: &Path, name: &str) -> Option<File> {
    let body = std::fs::read(dir.join(name)).ok()?;
    Some(File {
        mime: content_type(name),
        etag: None,
        body: Cow::Owned(body),
    })
}

/// The content type of the page's kinds of file; text is always UTF-8, so
/// no browser has to guess.
fn content_type(name: &str) -> &'static str {
    match Path::new(name).extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("txt") => "text/plain; charset=utf-8",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

/// The OpenMetrics text of `/metrics`, as a response.
pub(crate) fn metrics(text: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

/// A short plain-text response.
pub(crate) fn plain(status: StatusCode, text: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(text.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_paths_name_files() {
        assert_eq!(file_name("/").as_deref(), Some("index.html"));
        assert_eq!(file_name("/app.js").as_deref(), Some("app.js"));
        for bad in [
            "/../Cargo.toml",
            "/a/../b",
            "/./x",
            "//etc/passwd",
            "/a\\b",
            "/%2e%2e/x",
            "x",
        ] {
            assert_eq!(file_name(bad), None, "{bad}");
        }
    }
}
